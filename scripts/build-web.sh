#!/usr/bin/env bash
# Builds pkg/ (not committed): release wasm32 with simd128, wasm-bindgen --target web, then
# wasm-opt -O3 from npm's binaryen when it is installed (never Debian's: it breaks the module).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
setup_wasm
cargo build --release --lib --target wasm32-unknown-unknown
rm -rf pkg
wasm-bindgen --target web --out-dir pkg target/wasm32-unknown-unknown/release/l2d.wasm
if [ -x node_modules/.bin/wasm-opt ]; then
  node_modules/.bin/wasm-opt -O3 --enable-simd --enable-bulk-memory --enable-nontrapping-float-to-int \
    --enable-reference-types --enable-sign-ext --enable-mutable-globals \
    pkg/l2d_bg.wasm -o pkg/l2d_bg.opt.wasm && mv pkg/l2d_bg.opt.wasm pkg/l2d_bg.wasm
fi
raw=$(stat -c %s pkg/l2d_bg.wasm)
gz=$(gzip -9 -c pkg/l2d_bg.wasm | wc -c)
echo "pkg/l2d_bg.wasm: $raw bytes raw, $gz bytes gzip"
