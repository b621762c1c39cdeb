#!/usr/bin/env bash
# Reproduces the evaluation tables of the README with the shipped model (after
# scripts/build-default-assets.sh built target/l2d/memory.safetensors):
#   1. valid split: M and latent-space treatments (this is where the variants are chosen);
#   2. valid split: memory fractions for the chosen local variant;
#   3. test split: popularity, plain L2D-G / L2D-L (best M on valid), the best treatments, and
#      beam 1/5/10 (beam on a seeded 1,000 test samples);
#   4. the speed benchmark (history → top-20, same model and queries).
# STEP=N skips the steps before N.
set -euo pipefail
cd "$(dirname "$0")/.."
export MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=17179869184 MALLOC_TOP_PAD_=1073741824
L2D=target/release/l2d
STEP=${STEP:-1}
mkdir -p docs
if [ "$STEP" -le 1 ]; then
  $L2D eval --split valid --methods popularity,global,local --m 5,10,20,50,100,200 \
    --treatments center+cosine,prior=1,prior=2,prior=4,prior=8 --json docs/results/eval/eval-valid.json | tee docs/results/eval/eval-valid.md
fi
if [ "$STEP" -le 2 ]; then
  $L2D eval --split valid --methods local --m 10,20 --fractions 0.1,0.3,1.0 \
    --json docs/results/eval/eval-valid-fractions.json | tee docs/results/eval/eval-valid-fractions.md
  $L2D eval --split valid --methods local --m 5,10 --fractions 0.3,0.7 --dtype i8 \
    --json docs/results/eval/eval-valid-int8.json | tee docs/results/eval/eval-valid-int8.md
  # The cold-start rule: full memory, then the shipped variant.
  $L2D eval --split valid --methods global,local --m 10 --treatments cold=title \
    | tee docs/results/eval/eval-cold-start-valid.txt
  $L2D eval --split valid --methods local --m 10 --fractions 0.7 --dtype i8 --treatments cold=title \
    | tee docs/results/eval/eval-cold-start-shipped-valid.txt
fi
if [ "$STEP" -le 3 ]; then
  $L2D eval --split test --methods popularity,global,local,beam --m 10,20 --beam 1,5,10 --beam-limit 1000 \
    --treatments center+cosine,prior=1 --json models/default/eval.json | tee docs/results/eval/eval-test.md
  $L2D eval --split test --methods global,local --m 10 --treatments cold=title \
    | tee docs/results/eval/eval-cold-start-test.txt
fi
if [ "$STEP" -le 3 ]; then
  # The variant the browser ships: L2D-L (M=10) on 70% of the memory, int8, cold-start by title.
  $L2D eval --split test --methods local --m 10 --fractions 0.7 --dtype i8 --treatments cold=title \
    --json docs/results/eval/eval-test-shipped.json | tee docs/results/eval/eval-test-shipped.md
fi
if [ "$STEP" -le 4 ]; then
  $L2D bench --queries 100 --m 10 | tee docs/results/bench/bench.txt
fi
