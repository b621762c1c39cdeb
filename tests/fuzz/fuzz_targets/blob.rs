//! The blob reader on arbitrary bytes: never panics, and a blob it accepts serializes back to
//! exactly the same bytes (compared as bytes: NaN payload values are legal and unequal).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(blob) = l2d::blob::Blob::from_bytes(data) {
        assert_eq!(blob.to_bytes(), data);
    }
});
