#!/usr/bin/env bash
# Installs what the build and tests need, skipping what is already there. Sourced by the
# other scripts; each function is idempotent.
WASM_BINDGEN_VERSION=0.2.130

apt_install() {
  local missing=()
  for pkg in "$@"; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: apt-get install ${missing[*]}"
    local sudo=""
    [ "$(id -u)" = 0 ] || sudo=sudo
    $sudo apt-get update -qq >/dev/null || true
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
}

setup_wasm() {
  rustup target list --installed | grep -q wasm32-unknown-unknown || rustup target add wasm32-unknown-unknown
  if ! command -v wasm-bindgen >/dev/null || ! wasm-bindgen --version | grep -q "$WASM_BINDGEN_VERSION"; then
    echo "setup: cargo install wasm-bindgen-cli $WASM_BINDGEN_VERSION (about 5 minutes)"
    cargo install wasm-bindgen-cli --version "$WASM_BINDGEN_VERSION"
  fi
}

# Runs "$@" for the relaxed-SIMD wasm build (pkg/l2d_relaxed_bg.wasm, and one pass of the wasm
# tests): its own target directory, so it and the simd128 build never rebuild each other; the
# flags are .cargo/config.toml's plus relaxed-simd (this variable replaces that file's).
with_relaxed_simd() {
  CARGO_TARGET_DIR=target/relaxed \
    CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUSTFLAGS='-C target-feature=+simd128,+relaxed-simd --cfg getrandom_backend="wasm_js"' \
    "$@"
}

setup_browser() {
  apt_install chromium chromium-driver
}

# Firefox ESR (driven over WebDriver BiDi by puppeteer-core for the page tests, by geckodriver
# for the wasm tests) and WebKitGTK's MiniBrowser with WebKitWebDriver (Safari's engine; it
# needs a display, so xvfb).
setup_engines() {
  apt_install firefox-esr webkit2gtk-driver xvfb
  if ! command -v geckodriver >/dev/null; then
    echo "setup: cargo install geckodriver (about 3 minutes)"
    cargo install geckodriver
  fi
}

setup_gpu() {
  # Mesa lavapipe: a software Vulkan adapter for the native wgpu tests.
  apt_install mesa-vulkan-drivers libvulkan1
}

# Ray, for `l2d build --engine ray` (scripts/ray_memory.py) and its test; optional for users.
setup_ray() {
  python3 -c "import ray" 2>/dev/null || python3 -m pip install --quiet ray
}

setup_node() {
  if [ ! -d node_modules/playwright-core ] || [ ! -d node_modules/puppeteer-core ]; then
    npm install --no-audit --no-fund --silent
  fi
}
