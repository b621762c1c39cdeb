#!/usr/bin/env bash
# Reproduces the shipped default model (models/default) from data/ml-latest-small.
# Resumable: rerun after an interruption and training continues from models/default/checkpoint.
# Afterwards it builds the memory and blobs and writes the manifest (scripts/build-default-assets.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${MODEL:-models/default}
# glibc allocator settings: fewer page faults per step (~20% faster on this 2-core machine).
export MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=17179869184 MALLOC_TOP_PAD_=1073741824
cargo build --release --bin l2d
L2D=target/release/l2d
$L2D prepare --movielens data/ml-latest-small --out target/data/ml-latest-small
if [ ! -f "$MODEL/tokenizer.json" ]; then
  $L2D tokenizer --dataset target/data/ml-latest-small --out "$MODEL" --vocab-size 4000 --template compact
fi
COMMON=(--dataset target/data/ml-latest-small --model "$MODEL" --resume
  --hidden 192 --layers 4 --heads 4 --intermediate 768 --batch-tokens 2048
  --lr 0.002 --warmup 200 --seed 42 --eval-every 400)
# The shipped run was planned for 12 epochs and shortened to 8 at step 1007 to fit the
# time budget; both phases are replayed exactly (same batches, same schedule change).
STEP=$(python3 -c "import json;print(json.load(open('$MODEL/checkpoint/state.json'))['step'])" 2>/dev/null || echo 0)
if [ "$STEP" -lt 1007 ]; then
  $L2D train "${COMMON[@]}" --epochs 12 --until-step 1007
fi
$L2D train "${COMMON[@]}" --epochs 8
