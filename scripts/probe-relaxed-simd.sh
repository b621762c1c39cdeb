#!/usr/bin/env bash
# Probes whether relaxed SIMD's i32x4.relaxed_dot_i8x16_i7x16_add would speed up the int8
# product in this machine's headless Chromium: a throwaway wasm module (written to
# target/probe-relaxed/, not part of the crate) times the model kernel's inner loop — two
# activation rows × four weight rows of 512 values, as kernel::QuantActs::times runs it — with
# plain simd128's i32x4.dot_i16x8 on 16-bit values, with the relaxed dot on 8-bit values
# (16 products per instruction, but one operand must fit 7 bits unsigned: `relaxed`), and with
# the relaxed dot on 13-bit activations as two 7-bit digits (exact, two dots per sixteen
# products: `relaxed2`). Prints µs per call, alternating, four rounds each (each after a
# warm-up).
#   scripts/probe-relaxed-simd.sh
set -euo pipefail
cd "$(dirname "$0")/.."
DIR=target/probe-relaxed
mkdir -p "$DIR/src"
cat > "$DIR/Cargo.toml" <<'TOML'
[package]
name = "probe-relaxed"
version = "0.0.0"
edition = "2021"
[lib]
crate-type = ["cdylib"]
[profile.release]
opt-level = 3
[workspace]
TOML
cat > "$DIR/src/lib.rs" <<'RS'
#![allow(static_mut_refs)]
use core::arch::wasm32::*;
static mut A16: [i16; 1024] = [0; 1024];
static mut W16: [i16; 2048] = [0; 2048];
static mut A8: [i8; 1024] = [0; 1024];
static mut W8: [i8; 2048] = [0; 2048];
static mut D8: [u8; 2048] = [0; 2048];
#[no_mangle]
pub extern "C" fn init() {
    unsafe {
        for i in 0..1024 {
            A16[i] = (i as i16 * 37) % 8000 - 4000;
            A8[i] = ((i * 13) % 127) as i8;
        }
        for i in 0..2048 {
            D8[i] = ((i * 29) % 128) as u8;
        }
        for i in 0..2048 {
            W16[i] = (i as i16 * 11) % 255 - 127;
            W8[i] = ((i * 11) % 255) as i8 - 127;
        }
    }
}
#[no_mangle]
pub extern "C" fn plain(iters: u32) -> i32 {
    let mut t = 0i32;
    unsafe {
        for _ in 0..iters {
            let mut acc = [[i32x4_splat(0); 4]; 2];
            for c in 0..64 {
                let i = c * 8;
                let x = [v128_load(A16.as_ptr().add(i) as *const v128), v128_load(A16.as_ptr().add(512 + i) as *const v128)];
                for j in 0..4 {
                    let w = v128_load(W16.as_ptr().add(j * 512 + i) as *const v128);
                    for r in 0..2 { acc[r][j] = i32x4_add(acc[r][j], i32x4_dot_i16x8(x[r], w)); }
                }
            }
            for r in 0..2 { for j in 0..4 { t = t.wrapping_add(i32x4_extract_lane::<0>(acc[r][j])); } }
        }
    }
    t
}
// Exact for 13-bit activations: each as two 7-bit digits (x + 2¹³ = 128·hi + lo), two relaxed
// dots per sixteen products (the offset's correction, one multiply per row, left out).
#[no_mangle]
pub extern "C" fn relaxed2(iters: u32) -> i32 {
    let mut t = 0i32;
    unsafe {
        for _ in 0..iters {
            let mut total = [[0i32; 4]; 2];
            for (part, weight) in [(0usize, 128i32), (1024, 1)] {
                let mut acc = [[i32x4_splat(0); 4]; 2];
                for c in 0..32 {
                    let i = c * 16;
                    let x = [v128_load(D8.as_ptr().add(part + i) as *const v128), v128_load(D8.as_ptr().add(part + 512 + i) as *const v128)];
                    for j in 0..4 {
                        let w = v128_load(W8.as_ptr().add(j * 512 + i) as *const v128);
                        for r in 0..2 { acc[r][j] = i32x4_relaxed_dot_i8x16_i7x16_add(w, x[r], acc[r][j]); }
                    }
                }
                for r in 0..2 { for j in 0..4 { total[r][j] += weight * i32x4_extract_lane::<0>(acc[r][j]); } }
            }
            for r in 0..2 { for j in 0..4 { t = t.wrapping_add(total[r][j]); } }
        }
    }
    t
}
#[no_mangle]
pub extern "C" fn relaxed(iters: u32) -> i32 {
    let mut t = 0i32;
    unsafe {
        for _ in 0..iters {
            let mut acc = [[i32x4_splat(0); 4]; 2];
            for c in 0..32 {
                let i = c * 16;
                let x = [v128_load(A8.as_ptr().add(i) as *const v128), v128_load(A8.as_ptr().add(512 + i) as *const v128)];
                for j in 0..4 {
                    let w = v128_load(W8.as_ptr().add(j * 512 + i) as *const v128);
                    for r in 0..2 { acc[r][j] = i32x4_relaxed_dot_i8x16_i7x16_add(w, x[r], acc[r][j]); }
                }
            }
            for r in 0..2 { for j in 0..4 { t = t.wrapping_add(i32x4_extract_lane::<0>(acc[r][j])); } }
        }
    }
    t
}
RS
(cd "$DIR" && RUSTFLAGS="-C target-feature=+simd128,+relaxed-simd" cargo build --release --target wasm32-unknown-unknown --quiet)
node --input-type=module - "$DIR/target/wasm32-unknown-unknown/release/probe_relaxed.wasm" <<'JS'
import { chromium } from "playwright-core";
import { readFileSync } from "node:fs";
const bytes = [...readFileSync(process.argv[2])];
const browser = await chromium.launch({ executablePath: "/usr/bin/chromium", args: ["--no-sandbox"] });
const page = await browser.newPage();
const lines = await page.evaluate(async (bytes) => {
  const { instance } = await WebAssembly.instantiate(new Uint8Array(bytes));
  const e = instance.exports;
  e.init();
  const out = [];
  for (const f of ["plain", "relaxed", "relaxed2", "plain", "relaxed", "relaxed2", "plain", "relaxed", "relaxed2", "plain", "relaxed", "relaxed2"]) {
    e[f](200000);
    const t = performance.now();
    e[f](2000000);
    out.push(`${f.padEnd(8)} ${(((performance.now() - t) / 2000000) * 1000).toFixed(3)} µs per 2 × 4 rows × 512`);
  }
  return out;
}, bytes);
console.log(`${await browser.version()}\n${lines.join("\n")}`);
await browser.close();
JS
