//! The blob reader on arbitrary bytes: never panics, and a blob it accepts serializes back to
//! exactly the same bytes (compared as bytes: NaN payload values are legal and unequal).
//! Inputs that do not start like a blob go to the items-part reader instead, which must not
//! panic either and keeps every item it accepts.
#![no_main]
use libfuzzer_sys::fuzz_target;

use l2d::latent::blob::{Blob, ItemsReader, MAGIC};

fuzz_target!(|data: &[u8]| {
    if data.starts_with(&MAGIC[..4]) {
        if let Ok(blob) = Blob::from_bytes(data) {
            assert_eq!(blob.to_bytes(), data);
        }
        return;
    }
    let lines = data.iter().filter(|&&b| b == b'\n').count();
    let mut reader = ItemsReader::new(lines, data.len());
    if reader.part("fuzz", data).is_ok() {
        // Whole lines, one item each: with their own hash the items are complete.
        let hex = l2d::util::sha256_hex(data);
        let sha: Vec<u8> = (0..32)
            .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).expect("hex"))
            .collect();
        let items = reader
            .finish(&sha.try_into().expect("32 bytes"))
            .expect("hash and count match what was read");
        assert_eq!(items.len(), lines);
    }
});
