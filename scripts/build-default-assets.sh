#!/usr/bin/env bash
# After scripts/train-default.sh: converts the weights to f16, builds the full memory, writes
# the two blobs and the manifest of models/default, and refreshes the native parity fixture.
# The ranking defaults (prior, mode, M) are the ones chosen on the valid split by
# scripts/eval-default.sh (see README).
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${MODEL:-models/default}
MEMORY=target/l2d/memory.safetensors
export MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=17179869184 MALLOC_TOP_PAD_=1073741824
cargo build --release --bin l2d
L2D=target/release/l2d
$L2D prepare --movielens data/ml-latest-small --out target/data/ml-latest-small
$L2D convert --model "$MODEL" --dtype f16
$L2D memory --model "$MODEL" --out "$MEMORY"
$L2D blob --model "$MODEL" --memory "$MEMORY" --kind global --dtype f16 --out "$MODEL/global.blob"
$L2D blob --model "$MODEL" --memory "$MEMORY" --kind memory --dtype f16 \
  --fraction "${MEMORY_FRACTION:-0.3}" --out "$MODEL/memory.blob"
$L2D manifest --model "$MODEL" --popularity-prior "${PRIOR:-0}" --mode "${MODE:-global}" --m "${M:-20}"
L2D_BLESS=1 cargo test --release --test web_parity
