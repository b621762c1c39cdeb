//! The D3-format CSV loader on an arbitrary test-split file (with a small catalog): never panics.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let dir = std::env::temp_dir().join(format!("l2d-fuzz-{}", std::process::id()));
    let _ = std::fs::create_dir_all(dir.join("info"));
    let _ = std::fs::create_dir_all(dir.join("test"));
    let _ = std::fs::write(dir.join("info/i.txt"), "A, \"x\"\t0\nB\t1\n<a_1>\tC\t2\n");
    let _ = std::fs::write(dir.join("test/t.csv"), data);
    let _ = l2d::dataset::load_d3_dir(&dir);
});
