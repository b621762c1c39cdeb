#!/usr/bin/env bash
# Refits a trained model on train + valid: the same recipe, from scratch, for the schedule the
# selected run chose on valid (its epochs, or fewer when it selected an earlier step), with
# `--select final` (valid is in the training data, so nothing can be selected on it). Then the
# memory of every train + valid sample, the recipe's blobs within the download budget, the
# manifest with the scoring chosen on valid for MODEL_DIR (copied: the refit cannot choose),
# and one evaluation on test. This is L2D on the same information as SASRec refit on train +
# valid (`l2d eval --sasrec-refit`): both learn from the valid interactions.
#
#   scripts/refit.sh [PREPARED_DATASET] [MODEL_DIR] [OUT_DIR]
#
# MODEL_DIR must hold a finished `l2d train` run (train.json) and a manifest whose scoring was
# chosen by `l2d choose`. Resumable: rerun after an interruption. Work files: target/refit/.
set -euo pipefail
cd "$(dirname "$0")/.."
DATASET=${1:-target/data/ml-latest-small}
MODEL=${2:-models/default}
OUT=${3:-target/refit/$(basename "$MODEL")/model}
# BUDGET (bytes) and MEMORY_DTYPE (i8 or i4) override the recipe's (`l2d blobs --help`).
WORK=$(dirname "$OUT")
DATA=$WORK/data
export MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=17179869184 MALLOC_TOP_PAD_=1073741824
cargo build --release --bin l2d
L2D=target/release/l2d
mkdir -p "$OUT"
# The refit dataset: train = train + valid (in time order: the split is a global time split);
# valid kept only so the valid loss can be logged (it is training data now); test unchanged.
scripts/join-splits.py "$DATASET" "$DATA" --train train,valid --keep valid,test
# The selected run's options, and its schedule: the epochs it ran, or the epoch count of the
# step it selected when that came earlier (a refit cannot stop on valid). A stable-decay run
# is refit with the epochs its decay ended in: with nothing to select, the refit decays at the
# end of that ceiling.
FLAGS=$(python3 - "$MODEL/train.json" <<'PY'
import json, math, sys
state = json.load(open(sys.argv[1]))
c = state["config"]
per_epoch = state["total_steps"] / c["epochs"]
schedule = c.get("schedule", "cosine")
last = state["decay"]["start"] + state["decay"]["steps"] if state.get("decay") else state["best_step"]
epochs = max(1, min(c["epochs"], math.ceil(last / per_epoch - 1e-9)))
d = c.get("dropout", {})
flags = dict(hidden=c["hidden_size"], layers=c["layers"], heads=c["heads"],
             intermediate=c["intermediate_size"], epochs=epochs, batch_tokens=c["batch_tokens"],
             lr=c["learning_rate"], warmup=c["warmup_steps"], seed=c["seed"],
             eval_every=c["eval_every"], dropout_embedding=d.get("embedding", 0),
             dropout_attention=d.get("attention", 0), dropout_residual=d.get("residual", 0),
             dropout_mlp=d.get("mlp", 0), label_smoothing=c.get("label_smoothing", 0),
             history_crop=c.get("history_crop", 0), item_dropout=c.get("item_dropout", 0),
             schedule=schedule.replace("_", "-"))
print(" ".join(f"--{k.replace('_', '-')} {v}" for k, v in flags.items()) + " --select final")
PY
)
echo "refit options: $FLAGS"
cp "$MODEL/tokenizer.json" "$MODEL/l2d.json" "$OUT/"
# shellcheck disable=SC2086
$L2D train --dataset "$DATA" --model "$OUT" $FLAGS --resume
$L2D convert --model "$OUT" --dtype f16
scripts/build-memory.sh "$DATA" "$OUT" "$WORK/memory.safetensors"
$L2D blobs --dataset "$DATA" --model "$OUT" --memory "$WORK/memory.safetensors" ${BUDGET:+--budget "$BUDGET"} ${MEMORY_DTYPE:+--memory-dtype "$MEMORY_DTYPE"}
cp "$MODEL/manifest.json" "$OUT/manifest.json"
$L2D manifest --dataset "$DATA" --model "$OUT" --command "scripts/refit.sh $DATASET $MODEL $OUT" --keep-scoring
$L2D eval --dataset "$DATASET" --model "$OUT" --split test --methods popularity --shipped \
  --reference shipped --json "$WORK/eval-test.json" | tee "$WORK/eval-test.md"
