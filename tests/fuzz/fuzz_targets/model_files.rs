//! The model loader on a fuzzed config.json or fuzzed safetensors bytes (the other files are
//! the shipped ones): never panics, errors are values.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

fn shipped() -> &'static l2d::model::ModelFiles {
    static FILES: OnceLock<l2d::model::ModelFiles> = OnceLock::new();
    FILES.get_or_init(|| {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/default");
        l2d::model::ModelFiles::read_dir(&dir).expect("shipped model")
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let mut files = shipped().clone();
    if selector % 2 == 0 {
        files.config = rest.to_vec();
        let _ = l2d::model::ModelConfig::from_json(rest, "config.json");
    } else {
        files.weights = rest.to_vec();
    }
    let _ = l2d::model::Model::from_files(&files);
});
