#!/usr/bin/env bash
# Measures `l2d update` on a prepared D3 dataset: a deployed model whose memory holds the train
# states is updated with the valid split's interactions (as a raw CSV log), then evaluated on
# test against the train-only memory (the gain) and against a full rebuild of the memory from
# train + valid (same ranking expected); prints the wall time of the update and of the rebuild.
#
#   scripts/measure-update.sh [PREPARED_DATASET] [MODEL_DIR] [TRAIN_MEMORY]
#
# Work files go to target/update/. The model directory is copied, never modified.
set -euo pipefail
cd "$(dirname "$0")/.."
DATASET=${1:-target/data/ml-latest-small}
MODEL=${2:-models/default}
MEMORY=${3:-target/l2d/$(basename "$MODEL")/memory.safetensors}
# BUDGET (bytes) and MEMORY_DTYPE (i8 or i4) override the recipe's (`l2d blobs --help`).
WORK=target/update
export MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=17179869184 MALLOC_TOP_PAD_=1073741824
# L2D names a built binary to run instead (e.g. a copy, so a rebuild cannot change it mid-run).
if [ -z "${L2D:-}" ]; then
  cargo build --release --bin l2d
  L2D=target/release/l2d
fi
rm -rf "$WORK"; mkdir -p "$WORK"
# base: the dataset as the model was built (train only; valid and test not yet seen);
# rebuild: train + valid as one train split; valid.csv: the valid split's interactions.
scripts/join-splits.py "$DATASET" "$WORK/base/data" --train train
scripts/join-splits.py "$DATASET" "$WORK/rebuild/data" --train train,valid
python3 - "$DATASET" "$WORK" <<'PY'
import json, os, sys
src, work = sys.argv[1:]
with open(os.path.join(work, "valid.csv"), "w") as f:
    f.write("userId,movieId,timestamp\n")
    for line in open(os.path.join(src, "valid.jsonl")):
        s = json.loads(line)
        f.write(f'{s["user"]},{s["target"]},{s["timestamp"]}\n')
PY
for name in base rebuild; do
  mkdir -p "$WORK/$name/model"
  cp "$MODEL"/{config.json,model.safetensors,tokenizer.json,l2d.json,manifest.json,global.blob,memory.blob} "$MODEL"/items-*.jsonl "$WORK/$name/model/"
  [ -f "$MODEL/train.json" ] && cp "$MODEL/train.json" "$WORK/$name/model/"
done
cp "$MEMORY" "$WORK/base/memory.safetensors"

echo "== update: the train memory + the valid split's interactions"
T0=$(date +%s.%N)
$L2D update --dataset "$WORK/base/data" --model "$WORK/base/model" \
  --memory "$WORK/base/memory.safetensors" --interactions "$WORK/valid.csv" ${BUDGET:+--budget "$BUDGET"}
T1=$(date +%s.%N)

echo "== rebuild: memory and blobs from train + valid, the recipe of build-default-assets.sh"
R="$WORK/rebuild"
$L2D memory --dataset "$R/data" --model "$R/model" --out "$R/memory.safetensors"
$L2D blobs --dataset "$R/data" --model "$R/model" --memory "$R/memory.safetensors" ${BUDGET:+--budget "$BUDGET"} ${MEMORY_DTYPE:+--memory-dtype "$MEMORY_DTYPE"}
$L2D manifest --dataset "$R/data" --model "$R/model" --keep-scoring
T2=$(date +%s.%N)
python3 - "$T0" "$T1" "$T2" <<'PY'
import sys
t0, t1, t2 = map(float, sys.argv[1:])
print(f"wall time: update {t1 - t0:.1f} s, rebuild {t2 - t1:.1f} s ({(t2 - t1) / (t1 - t0):.1f}x)")
PY
echo "== appended samples against the valid split's"
python3 - "$DATASET" "$WORK" <<'PY'
import json, sys
src, work = sys.argv[1:]
valid = [json.loads(l) for l in open(f"{src}/valid.jsonl")]
train = sum(1 for _ in open(f"{src}/train.jsonl"))
updated = [json.loads(l) for l in open(f"{work}/base/data/train.jsonl")][train:]
key = lambda s: (s["user"], s["target"], s["timestamp"])
by_key = {key(s): s["history"] for s in valid}
same = sum(1 for s in updated if by_key.get(key(s)) == s["history"])
print(f"{len(updated)} appended, {len(valid)} valid samples; {same} with the same user, target, time and history")
PY
echo "== test: train-only memory, updated memory, rebuilt memory (each with its manifest's scoring)"
for name in "$MODEL" "$WORK/base/model" "$R/model"; do
  echo "-- $name"
  $L2D eval --dataset "$DATASET" --model "$name" --split test --methods popularity --shipped \
    --reference shipped --json "$WORK/$(echo "$name" | tr / _).json"
done
