#!/usr/bin/env bash
# Builds pkg/ (not committed): release wasm32 with simd128 (pkg/l2d_bg.wasm) and the same with
# relaxed SIMD (pkg/l2d_relaxed_bg.wasm, which the worker loads where the browser validates
# relaxed SIMD: kernel::relaxed), wasm-bindgen --target web (one JS glue serves both modules:
# checked), then wasm-opt -O3 from npm's binaryen when it is installed (never Debian's: it
# breaks the module).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
setup_wasm
cargo build --release --lib --target wasm32-unknown-unknown
with_relaxed_simd cargo build --release --lib --target wasm32-unknown-unknown
rm -rf pkg target/pkg-relaxed
# Without the name and producers sections, which no browser runs (a panic's message still names
# its file and line; its stack lists wasm-function[N] instead of Rust names): 140 KB less gzip.
bindgen() { wasm-bindgen --target web --remove-name-section --remove-producers-section "$@"; }
bindgen --out-dir pkg target/wasm32-unknown-unknown/release/l2d.wasm
bindgen --out-dir target/pkg-relaxed target/relaxed/wasm32-unknown-unknown/release/l2d.wasm
# The glue's code must be the same (its comments name closure shims by index, which may shift).
glue() { grep -v '^\s*//' "$1"; }
cmp -s <(glue pkg/l2d.js) <(glue target/pkg-relaxed/l2d.js) || { echo "the relaxed-SIMD build's JS glue differs from pkg/l2d.js"; exit 1; }
mv target/pkg-relaxed/l2d_bg.wasm pkg/l2d_relaxed_bg.wasm
for wasm in pkg/l2d_bg.wasm pkg/l2d_relaxed_bg.wasm; do
  if [ -x node_modules/.bin/wasm-opt ]; then
    node_modules/.bin/wasm-opt -O3 --enable-simd --enable-relaxed-simd --enable-bulk-memory \
      --enable-nontrapping-float-to-int --enable-reference-types --enable-sign-ext \
      --enable-mutable-globals "$wasm" -o "$wasm.opt" && mv "$wasm.opt" "$wasm"
  fi
  echo "$wasm: $(stat -c %s "$wasm") bytes raw, $(gzip -9 -c "$wasm" | wc -c) bytes gzip"
done
# The npm package (target/npm/l2d-VERSION.tgz): the wasm package plus the client, worker,
# widget and their types, laid out as in the repository so the worker's `../pkg/l2d.js` import
# holds; `exports` in www/npm-package.json.
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
npm_dir=target/npm/l2d
rm -rf "$npm_dir" && mkdir -p "$npm_dir/www"
cp -r pkg "$npm_dir/pkg"
rm -f "$npm_dir/pkg/.gitignore"
cp www/l2d-client.js www/l2d-client.d.ts www/l2d-widget.js www/l2d-widget.d.ts \
  www/l2d-worker.js www/l2d-simd.js www/l2d-follows.js www/l2d-fetch.js "$npm_dir/www/"
sed "s/\"VERSION\"/\"$version\"/" www/npm-package.json > "$npm_dir/package.json"
cat > "$npm_dir/README.md" <<MD
# l2d $version

Private, in-browser recommendations: a language model runs in a Web Worker (wasm, WebGPU
scoring when it pays) and ranks a catalog from the visitor's history, which never leaves the
browser. Serve a folder built by \`l2d build\` (its \`site/\`) and embed:

\`\`\`html
<script type="module" src="node_modules/l2d/www/l2d-widget.js"></script>
<l2d-recommendations manifest="/site/manifest.json" k="8"></l2d-recommendations>
\`\`\`

or from code: \`import { L2DClient } from "l2d"\`, \`import { history } from "l2d/widget"\`.
MD
if command -v npm >/dev/null; then
  (cd target/npm && npm pack ./l2d --silent >/dev/null)
  echo "target/npm/l2d-$version.tgz: $(stat -c %s "target/npm/l2d-$version.tgz") bytes"
else
  echo "npm not found: $npm_dir is the package, not packed"
fi
