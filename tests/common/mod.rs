//! The shipped default model and its blobs, as the native tests load them.
#![allow(dead_code)] // each test binary uses its own subset

use std::path::{Path, PathBuf};

use l2d::blob::Blob;
use l2d::model::Model;

/// `models/default` in this checkout.
pub fn default_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("models/default")
}

/// The shipped model.
pub fn default_model() -> Model {
    Model::load_dir(&default_dir()).unwrap()
}

/// A shipped blob (`memory.blob` or `global.blob`), parsed.
pub fn default_blob(name: &str) -> Blob {
    Blob::from_bytes(&std::fs::read(default_dir().join(name)).unwrap()).unwrap()
}
