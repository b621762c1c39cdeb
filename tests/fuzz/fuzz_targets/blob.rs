//! libFuzzer's entry for `checks::blob` (what it checks is documented there).
#![no_main]
#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::blob(data));
