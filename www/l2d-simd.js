// Which wasm build this browser runs: pkg/l2d_relaxed_bg.wasm where relaxed SIMD validates (its
// int8 product makes sixteen byte products per instruction: kernel::relaxed in the crate; the
// same results as the other build), else pkg/l2d_bg.wasm (simd128). The probe is a module of
// one function using i8x16.relaxed_swizzle.
const RELAXED_SIMD_PROBE = new Uint8Array([
  0, 97, 115, 109, 1, 0, 0, 0, 1, 5, 1, 96, 0, 1, 123, 3, 2, 1, 0, 10, 15, 1, 13, 0, 65, 1, 253, 15, 65, 2,
  253, 15, 253, 128, 2, 11,
]);

export function wasmBuild() {
  return WebAssembly.validate(RELAXED_SIMD_PROBE) ? "l2d_relaxed_bg.wasm" : "l2d_bg.wasm";
}
