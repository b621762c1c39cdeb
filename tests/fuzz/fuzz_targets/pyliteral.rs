//! The Python list-literal parser of D3 CSV cells on arbitrary text: never panics.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = l2d::data::pyliteral::parse_list(text);
    }
});
