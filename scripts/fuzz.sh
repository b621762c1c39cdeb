#!/usr/bin/env bash
# Runs each cargo-fuzz target for SECONDS (default 30) from the seed corpora in fuzz/seeds,
# keeping the grown corpora in target/fuzz-corpus. Needs the nightly toolchain; installs
# cargo-fuzz when missing. Prints libFuzzer's final stats line per target.
#   scripts/fuzz.sh [SECONDS] [TARGET...]
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_EACH=${1:-30}
shift || true
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=(blob pyliteral raw_log model_files)
rustup toolchain list | grep -q nightly || rustup toolchain install nightly --profile minimal
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz
for target in "${TARGETS[@]}"; do
  mkdir -p "target/fuzz-corpus/$target"
  echo "== fuzz $target for ${SECONDS_EACH}s"
  cargo +nightly fuzz run --fuzz-dir fuzz "$target" "target/fuzz-corpus/$target" "fuzz/seeds/$target" -- \
    -max_total_time="$SECONDS_EACH" -rss_limit_mb=2048 -max_len=65536 2>&1 | grep -E "^#[0-9]+.*(DONE|pulse)|Done [0-9]+ runs|ERROR|panicked|SUMMARY" | tail -3
done
