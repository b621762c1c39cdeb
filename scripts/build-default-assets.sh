#!/usr/bin/env bash
# After training (scripts/train-default.sh): converts the weights to f16, builds the full memory,
# writes the global blob (f16) and the memory blob (int4, the newest train states that keep
# the first visit's model files + blob within the download budget, `l2d blobs --help`: the
# split is in time order, and the newest interactions are the closest to those predicted), the
# manifest; chooses the browser's default scoring on valid from that blob (`l2d choose`: the
# cheapest to serve that valid cannot tell from the best); evaluates what the browser
# ships on test once (`l2d eval --shipped`, next to popularity); refreshes the browser fixtures.
# What ships is deployed with every interaction before test: after the choice on valid, the
# valid split's interactions are appended to the memory (`l2d update`, scripts/measure-update.sh),
# and SASRec is compared both trained on train and refit on train + valid (kept in
# target/l2d/sasrec: SASRec does not depend on the L2D model, so a rebuild on the same split
# loads those runs instead of training them again).
#
#   scripts/build-default-assets.sh [PREPARED_DATASET] [MODEL_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
DATASET=${1:-target/data/ml-latest-small}
MODEL=${2:-models/default}
# BUDGET (bytes) and MEMORY_DTYPE (i8 or i4) override the recipe's (`l2d blobs --help`).
WORK=target/l2d/$(basename "$MODEL")
MEMORY=$WORK/memory.safetensors
export MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=17179869184 MALLOC_TOP_PAD_=1073741824
# L2D names a built binary to run instead (e.g. a copy, so a rebuild cannot change it mid-run).
if [ -z "${L2D:-}" ]; then
  cargo build --release --bin l2d
  L2D=target/release/l2d
fi
mkdir -p "$WORK"
$L2D convert --model "$MODEL" --dtype f16
# The memory depends on the model files only: rebuilt when their hashes change.
scripts/build-memory.sh "$DATASET" "$MODEL" "$MEMORY"
$L2D blobs --dataset "$DATASET" --model "$MODEL" --memory "$MEMORY" ${BUDGET:+--budget "$BUDGET"} ${MEMORY_DTYPE:+--memory-dtype "$MEMORY_DTYPE"}
rm -f "$MODEL/eval.json"
$L2D manifest --dataset "$DATASET" --model "$MODEL" --command "scripts/train-default.sh $DATASET $MODEL"
$L2D choose --dataset "$DATASET" --model "$MODEL" --json "$WORK/choose-valid.json" | tee "$WORK/choose-valid.md"
# Deploy with every interaction known before test: the valid split's interactions appended to
# the memory by `l2d update` (the scoring stays the one chosen on valid above). The script also
# evaluates the train-only, updated and rebuilt memories on test (docs/results/update/update.md).
scripts/measure-update.sh "$DATASET" "$MODEL" "$MEMORY" | tee "$WORK/update.md"
cp target/update/base/model/{global.blob,memory.blob,items-*.jsonl} "$MODEL/"
$L2D eval --dataset "$DATASET" --model "$MODEL" --split test --methods popularity,follows,sasrec,beam \
  --beam 1,5,10 --sasrec-refit --sasrec-cache target/l2d/sasrec --shipped --reference shipped --json "$MODEL/eval.json" \
  | tee "$WORK/eval-test-shipped.md"
# The manifest lists eval.json with its hash: rewrite it, keeping the chosen scoring; its
# dataset record is the memory's (train + the appended valid interactions).
$L2D manifest --dataset target/update/base/data --model "$MODEL" \
  --command "scripts/train-default.sh $DATASET $MODEL" --keep-scoring
# Items parts of earlier catalogs (named by content) are no longer listed: remove them.
python3 - "$MODEL" <<'PY'
import glob, json, os, sys
listed = set(json.load(open(os.path.join(sys.argv[1], "manifest.json")))["items"])
for path in glob.glob(os.path.join(sys.argv[1], "items-*.jsonl")):
    if os.path.basename(path) not in listed:
        os.remove(path)
PY
if [ "$MODEL" = models/default ]; then
  L2D_BLESS=1 cargo test --release --test web_parity
fi
