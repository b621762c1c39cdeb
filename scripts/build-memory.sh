#!/usr/bin/env bash
# Builds the memory of a model (`l2d memory`: the state of every train sample) unless the file
# already holds the memory of exactly these model files (their hashes, in MEMORY.stamp).
#
#   scripts/build-memory.sh PREPARED_DATASET MODEL_DIR MEMORY_FILE
set -euo pipefail
cd "$(dirname "$0")/.."
DATASET=$1
MODEL=$2
MEMORY=$3
STAMP=$(cd "$MODEL" && sha256sum config.json model.safetensors tokenizer.json l2d.json | sha256sum | cut -c1-64)
if [ ! -f "$MEMORY" ] || [ "$(cat "$MEMORY.stamp" 2>/dev/null)" != "$STAMP" ]; then
  mkdir -p "$(dirname "$MEMORY")"
  target/release/l2d memory --dataset "$DATASET" --model "$MODEL" --out "$MEMORY"
  echo "$STAMP" > "$MEMORY.stamp"
fi
