#!/usr/bin/env bash
# Reproduces the evaluation tables of the README with the shipped model (after
# scripts/build-default-assets.sh built target/l2d/memory.safetensors):
#   1. valid split: M, memory fraction and latent-space treatments (choice of the defaults);
#   2. test split: the chosen variants, popularity and beam 1/5/10 (beam on a seeded 1,000);
#   3. the speed benchmark.
set -euo pipefail
cd "$(dirname "$0")/.."
export MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=17179869184 MALLOC_TOP_PAD_=1073741824
L2D=target/release/l2d
mkdir -p docs
$L2D eval --split valid --methods popularity,global,local --m 5,10,20,50,100,200 \
  --treatments center+cosine,prior=1,prior=2,prior=4,prior=8 --json docs/eval-valid.json | tee docs/eval-valid.md
$L2D eval --split valid --methods global,local --m "${M:-20}" --fractions 0.1,0.3 \
  --treatments "prior=${PRIOR:-4}" --json docs/eval-valid-fractions.json | tee docs/eval-valid-fractions.md
$L2D eval --split test --methods popularity,global,local,beam --m "${M:-20}" --beam 1,5,10 --beam-limit 1000 \
  --treatments "prior=${PRIOR:-4}" --json models/default/eval.json | tee docs/eval-test.md
$L2D bench --queries 100 --m "${M:-20}" | tee docs/bench.txt
