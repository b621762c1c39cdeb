#!/usr/bin/env bash
# The recipe's blobs for a model directory from a full memory: the global blob (f16) and the
# memory blob (int8, the newest states that keep model files + blob within the download budget
# BUDGET, default 16.5 MB), both with cold-start title vectors. The one place of this rule for
# the scripts (`l2d update` applies the same rule to a deployed folder).
#
#   scripts/write-blobs.sh PREPARED_DATASET MODEL_DIR MEMORY
set -euo pipefail
cd "$(dirname "$0")/.."
DATASET=$1 MODEL=$2 MEMORY=$3
BUDGET=${BUDGET:-16500000}
L2D=target/release/l2d
$L2D blob --dataset "$DATASET" --model "$MODEL" --memory "$MEMORY" --kind global --dtype f16 \
  --cold-start title --out "$MODEL/global.blob"
FIXED=$(( $(stat -c%s "$MODEL/model.safetensors") + $(stat -c%s "$MODEL/tokenizer.json") \
  + $(stat -c%s "$MODEL/config.json") + $(stat -c%s "$MODEL/l2d.json") ))
$L2D blob --dataset "$DATASET" --model "$MODEL" --memory "$MEMORY" --kind memory --dtype i8 \
  --cold-start title --keep newest --max-bytes $(( BUDGET - FIXED )) --out "$MODEL/memory.blob"
