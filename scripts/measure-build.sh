#!/usr/bin/env bash
# What `l2d build` costs on this machine per 10^4 interactions: builds, with the recipe's
# defaults, a log of the first ml-latest-small users (in id order) that add up to at least
# 10,000 interactions, and prints each stage's wall time from build.json. Resumable (rerun
# and finished stages are skipped; delete target/build-cost to measure again).
#
#   scripts/measure-build.sh [INTERACTIONS]   (default 10000)
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-10000}
OUT=target/build-cost
export MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=17179869184 MALLOC_TOP_PAD_=1073741824
cargo build --release --bin l2d
mkdir -p "$OUT"
python3 - "$N" "$OUT" <<'PY'
import csv, sys
n, out = int(sys.argv[1]), sys.argv[2]
rows = list(csv.reader(open("data/ml-latest-small/ratings.csv")))
header, rows = rows[0], rows[1:]
users = sorted({int(r[0]) for r in rows})
by_user = {}
for r in rows:
    by_user.setdefault(int(r[0]), []).append(r)
kept = []
for u in users:
    if len(kept) >= n:
        break
    kept += by_user[u]
with open(f"{out}/ratings.csv", "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(header)
    w.writerows(kept)
print(f"{out}/ratings.csv: {len(kept)} interactions of {len({r[0] for r in kept})} users")
PY
START=$(date +%s)
target/release/l2d build --interactions "$OUT/ratings.csv" --items data/ml-latest-small/movies.csv \
  --out "$OUT/build" > "$OUT/build.log" 2>&1 || { tail -30 "$OUT/build.log"; exit 1; }
END=$(date +%s)
tail -1 "$OUT/build.log"
python3 - "$OUT" $((END - START)) <<'PY'
import json, sys
out, wall = sys.argv[1], int(sys.argv[2])
log = json.load(open(f"{out}/build/build.json"))
print(f"wall time of this invocation: {wall} s (stages skipped by an earlier run cost 0 here)")
order = ["prepare", "tokenizer", "train", "memory", "blobs", "choose", "eval", "site"]
for stage in order:
    record = log["stages"].get(stage, {"seconds": float("nan")})
    print(f"  {stage:>9}: {record['seconds']:8.1f} s")
print(f"  {'all':>9}: {sum(r['seconds'] for r in log['stages'].values()):8.1f} s")
PY
sed -n '/^Quality/,/^Sizes/p' "$OUT/build/report.md"
