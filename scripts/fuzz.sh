#!/usr/bin/env bash
# Runs each cargo-fuzz target for SECONDS (default 30) from the seed corpora in tests/fuzz/seeds,
# keeping the grown corpora in target/fuzz-corpus. Needs the nightly toolchain; installs
# cargo-fuzz when missing. Prints libFuzzer's final stats line per target.
#   scripts/fuzz.sh [SECONDS] [TARGET...]
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_EACH=${1:-30}
shift || true
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=(blob pyliteral raw_log model_files recommend follows)
rustup toolchain list | grep -q nightly || rustup toolchain install nightly --profile minimal
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz
mkdir -p target/fuzz-logs
for target in "${TARGETS[@]}"; do
  mkdir -p "target/fuzz-corpus/$target"
  log="target/fuzz-logs/$target.log"
  echo "== fuzz $target for ${SECONDS_EACH}s (log: $log)"
  if ! cargo +nightly fuzz run --fuzz-dir tests/fuzz "$target" "target/fuzz-corpus/$target" "tests/fuzz/seeds/$target" -- \
      -max_total_time="$SECONDS_EACH" -rss_limit_mb=2048 -max_len=65536 >"$log" 2>&1; then
    tail -40 "$log"
    echo "fuzz $target FAILED: the crashing input is in tests/fuzz/artifacts/$target/" >&2
    exit 1
  fi
  grep -E "Done [0-9]+ runs" "$log" | tail -1
done
