#!/usr/bin/env bash
# The page test's deployed folder before and after `l2d update`: the shipped model over a small
# catalog (the first 40 users of ml-latest-small), then one update that adds a new film and
# one interaction with it per user. Writes OUT/v1/ and OUT/v2/ (model files, blobs, manifest).
#
#   scripts/build-update-fixture.sh [OUT]
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-target/pages/update}
L2D=target/release/l2d
cargo build --release --bin l2d
rm -rf "$OUT"; mkdir -p "$OUT/v1"
python3 - "$OUT" <<'PY'
import csv, sys
out = sys.argv[1]
last = {}
with open("data/ml-latest-small/ratings.csv") as src, open(f"{out}/log.csv", "w") as dst:
    rows = csv.reader(src); header = next(rows)
    w = csv.writer(dst); w.writerow(["user", "item", "ts"])
    for user, item, _, ts in rows:
        if int(user) <= 40:
            w.writerow([user, item, ts]); last[user] = max(last.get(user, 0), int(ts))
with open(f"{out}/new.csv", "w") as f:
    f.write("user,item,ts\n")
    for user, ts in sorted(last.items(), key=lambda x: int(x[0])):
        f.write(f"{user},900001,{ts + 1}\n")
with open(f"{out}/new_items.csv", "w") as f:
    f.write("id,name\n900001,The Update Test Film (2026)\n")
PY
cols=(--user-column user --item-column item --time-column ts --item-id-column id --title-column name)
python3 -c "import csv,sys; w=csv.writer(open('$OUT/items.csv','w')); r=csv.reader(open('data/ml-latest-small/movies.csv')); next(r); w.writerow(['id','name']); [w.writerow(x[:2]) for x in r]"
$L2D prepare --interactions "$OUT/log.csv" --items "$OUT/items.csv" "${cols[@]}" --name update-fixture --out "$OUT/data"
cp models/default/{config.json,model.safetensors,tokenizer.json,l2d.json,manifest.json} "$OUT/v1/"
$L2D memory --dataset "$OUT/data" --model "$OUT/v1" --out "$OUT/memory.safetensors"
$L2D blobs --dataset "$OUT/data" --model "$OUT/v1" --memory "$OUT/memory.safetensors"
$L2D manifest --dataset "$OUT/data" --model "$OUT/v1" --keep-scoring --command "scripts/build-update-fixture.sh"
cp -r "$OUT/v1" "$OUT/v2"
$L2D update --dataset "$OUT/data" --model "$OUT/v2" --memory "$OUT/memory.safetensors" \
  --interactions "$OUT/new.csv" --items "$OUT/new_items.csv" "${cols[@]}"
