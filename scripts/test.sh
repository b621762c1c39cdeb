#!/usr/bin/env bash
# Every test of l2d, on a fresh machine: installs what is missing (wasm target, wasm-bindgen-cli,
# Chromium + chromedriver, Firefox ESR + geckodriver, WebKitGTK + WebKitWebDriver, Mesa
# lavapipe, Ray), then formatting, lints, native tests, the tokenizer parity test with the Oniguruma
# engine, the wasm32 build, the wasm tests in headless Chromium with WebGPU (SwiftShader, the
# simd128 build) and without it (CPU fallback, the relaxed-SIMD build) and in headless Firefox
# (both builds), the first tier's JavaScript against the Rust ranking, the page-level tests in
# Chromium, and the storefront cases in Chromium, Firefox and WebKit. Every fuzz target's seed
# inputs are replayed by the native tests (tests/fuzz_seeds.rs); fuzzing itself (nightly and a
# sanitizer build, about 20 minutes to build on two cores) runs with FUZZ_SECONDS=N set, or
# scripts/fuzz.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
setup_wasm
setup_browser
setup_gpu
setup_engines
step() { echo; echo "== $* ($(date +%T))"; }

step "format and lints"
cargo fmt --check
cargo clippy --release --all-targets -- -D warnings
cargo clippy --release --lib --test web --target wasm32-unknown-unknown -- -D warnings
with_relaxed_simd cargo clippy --release --lib --test web --target wasm32-unknown-unknown -- -D warnings

step "native tests (fancy-regex tokenizer, as in the browser; wgpu on lavapipe; fuzz seeds replayed; the memory stage on a local Ray instance)"
setup_ray
L2D_REQUIRE_RAY=1 cargo test --release

step "tokenizer parity with the Oniguruma engine"
cargo test --release --features onig --test tokenizer

step "wasm32 library build"
cargo build --release --lib --target wasm32-unknown-unknown

export CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER=wasm-bindgen-test-runner
export CHROMEDRIVER=/usr/bin/chromedriver
export WASM_BINDGEN_TEST_TIMEOUT=600
step "wasm tests in headless Chromium with WebGPU (SwiftShader)"
WASM_BINDGEN_TEST_WEBDRIVER_JSON=tests/webdriver-webgpu.json \
  cargo test --release --target wasm32-unknown-unknown --test web -- --nocapture 2>&1 | tee target/web-webgpu.log
grep -q "WebGPU adapter present" target/web-webgpu.log || { echo "the WebGPU run had no adapter"; exit 1; }

step "wasm tests in headless Chromium without WebGPU (CPU fallback), relaxed-SIMD build"
WASM_BINDGEN_TEST_WEBDRIVER_JSON=tests/webdriver-nogpu.json \
  with_relaxed_simd cargo test --release --target wasm32-unknown-unknown --test web -- --nocapture 2>&1 | tee target/web-nogpu.log
grep -q "no WebGPU adapter, auto fell back to cpu" target/web-nogpu.log || { echo "the no-WebGPU run still had an adapter"; exit 1; }
grep -q "l2d-test: simd relaxed" target/web-nogpu.log || { echo "the relaxed-SIMD run did not run the relaxed build"; exit 1; }
grep -q "l2d-test: simd simd128" target/web-webgpu.log || { echo "the simd128 run did not run the simd128 build"; exit 1; }

# Firefox: the same wasm tests (the parity fixture: Firefox's states and rankings equal the
# native ones, as Chromium's do), both builds; no WebGPU there, so the CPU path.
step "wasm tests in headless Firefox, simd128 and relaxed-SIMD builds"
for build in simd128 relaxed; do
  run=(); [ "$build" = relaxed ] && run=(with_relaxed_simd)
  (
    unset CHROMEDRIVER
    export GECKODRIVER WASM_BINDGEN_TEST_WEBDRIVER_JSON=tests/webdriver-firefox.json
    GECKODRIVER="$(command -v geckodriver)"
    "${run[@]}" cargo test --release --target wasm32-unknown-unknown --test web -- --nocapture
  ) 2>&1 | tee "target/web-firefox-$build.log"
  grep -q "l2d-test: simd $build" "target/web-firefox-$build.log" || { echo "the Firefox $build run did not run the $build build"; exit 1; }
  grep -q "test result: ok" "target/web-firefox-$build.log" || { echo "the Firefox $build run did not pass"; exit 1; }
done

step "the first tier in plain JavaScript ranks as the Rust build (node, the parity fixture)"
setup_node
node tests/follows.mjs

step "page tests: storefront widget, privacy, demo page, cache, CDN, CSP, update, build, npm package (playwright-core + Chromium)"
setup_node
scripts/build-web.sh
cargo test --release --test www -- --ignored   # the simd128 module holds no relaxed-SIMD instruction
cargo run --release --quiet --bin l2d -- prepare --movielens data/ml-latest-small --out target/data/ml-latest-small
scripts/build-update-fixture.sh target/pages/update
node tests/pages.mjs

step "the storefront in Chromium, Firefox and WebKit (support matrix: target/support-matrix.md)"
node tests/engines.mjs

if [ -n "${FUZZ_SECONDS:-}" ]; then
  step "fuzz: every cargo-fuzz target for $FUZZ_SECONDS s from its seeds (nightly, sanitizer build)"
  scripts/fuzz.sh "$FUZZ_SECONDS"
fi

step "all tests passed"
