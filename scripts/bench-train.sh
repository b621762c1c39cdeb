#!/usr/bin/env bash
# Steps per second of data-parallel training, paired: rounds of `l2d train --until-step STEPS`
# from the same initial weights with 1 thread, then with every core (THREADS overrides the
# list), alternating so that drift of the machine falls on both. Prints each run's record (steps/s
# and the milliseconds per step of batching, forward, backward, gradient sum, optimizer), the
# medians, the speed-up of each thread count over 1 thread, and whether the runs of one thread
# count ended with identical weights. Run it on an idle machine.
#
#   scripts/bench-train.sh [PREPARED_DATASET] [STEPS] [ROUNDS]
#
# PREPARED_DATASET defaults to ml-latest-small (prepared as scripts/train-default.sh does) and
# uses the shipped model's tokenizer and template; another dataset needs a model directory
# holding its own tokenizer.json and l2d.json (MODEL=dir).
set -euo pipefail
cd "$(dirname "$0")/.."
DATASET=${1:-target/data/ml-latest-small}
STEPS=${2:-40}
ROUNDS=${3:-3}
MODEL=${MODEL:-models/default}
THREADS=${THREADS:-"1 $(nproc)"}
# The glibc allocator settings of scripts/train-default.sh.
export MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=17179869184 MALLOC_TOP_PAD_=1073741824
cargo build --release --bin l2d
L2D=target/release/l2d
if [ "$DATASET" = target/data/ml-latest-small ] && [ ! -f "$DATASET/dataset.json" ]; then
  $L2D prepare --movielens data/ml-latest-small --out "$DATASET"
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "bench-train: $DATASET, $STEPS steps per run, $ROUNDS rounds of threads: $THREADS; $(nproc) cores"
for round in $(seq "$ROUNDS"); do
  for t in $THREADS; do
    dir="$work/r$round-t$t"
    mkdir -p "$dir"
    cp "$MODEL/tokenizer.json" "$MODEL/l2d.json" "$dir/"
    $L2D train --dataset "$DATASET" --model "$dir" --until-step "$STEPS" --eval-every 1000000000 \
      --threads "$t" 2>&1 | grep 'steps on' | sed "s/^/round $round: /"
  done
done
python3 - "$work" <<'EOF'
import glob, hashlib, json, os, statistics, sys
runs = {}
for d in sorted(glob.glob(os.path.join(sys.argv[1], "r*-t*"))):
    state = json.load(open(os.path.join(d, "train.json")))
    record = state["runs"][-1]
    weights = hashlib.sha256(open(os.path.join(d, "checkpoint", "weights.safetensors"), "rb").read()).hexdigest()
    runs.setdefault(record["threads"], []).append((record, weights))
pieces = ["batching", "forward", "backward", "gradient_sum", "optimizer", "step"]
med = {}
print("\nmedians per step (ms) | steps/s | " + " | ".join(pieces))
for threads, rs in sorted(runs.items()):
    sps = statistics.median(r["steps"] / r["times"]["step"] for r, _ in rs)
    ms = {p: statistics.median(1e3 * r["times"][p] / r["steps"] for r, _ in rs) for p in pieces}
    med[threads] = (sps, ms)
    same = len({w for _, w in rs}) == 1
    print(f"{threads} threads ({len(rs)} runs) | {sps:.3f} | " + " | ".join(f"{ms[p]:.1f}" for p in pieces)
          + f" | weights {'identical' if same else 'DIFFER'} across its runs")
if 1 in med:
    for threads, (sps, ms) in sorted(med.items()):
        if threads == 1:
            continue
        ratio = {p: med[1][1][p] / ms[p] if ms[p] > 0 else float("nan") for p in pieces}
        print(f"{threads} threads over 1: {sps / med[1][0]:.2f}x steps/s; per piece: "
              + ", ".join(f"{p} {ratio[p]:.2f}x" for p in pieces))
EOF
