//! Allocation bounds on hostile input: forged headers and sizes fail with a named error before
//! anything big is allocated. Kept in its own test binary so the process's peak memory
//! (VmHWM) measures only these cases.
#![cfg(not(target_arch = "wasm32"))]

use std::path::Path;

use l2d::latent::blob::{Blob, BlobError};
use l2d::model::{Model, ModelFiles};

fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap()
}

fn forged_blob(items: u32, rows: u32, dim: u32) -> Vec<u8> {
    let mut bytes = b"L2DBLOB\0".to_vec();
    bytes.extend_from_slice(&l2d::latent::blob::VERSION.to_le_bytes());
    bytes.extend_from_slice(&[0, 0, 0, 0]); // global, f32, no cold-start vectors
    bytes.extend_from_slice(&items.to_le_bytes());
    bytes.extend_from_slice(&rows.to_le_bytes());
    bytes.extend_from_slice(&dim.to_le_bytes());
    bytes.extend_from_slice(&8u32.to_le_bytes()); // payload length
    bytes.extend_from_slice(&[0; 96]); // model fingerprint + payload and items checksums
    bytes.extend_from_slice(&[0; 8]); // the 8 payload bytes it claims
    bytes
}

#[test]
fn forged_sizes_fail_fast_with_named_errors_and_small_peak_memory() {
    let before = peak_rss_kib();

    // A 136-byte blob claiming 10^9 items, or 4·10^9 rows of 65,536 dimensions.
    for (items, rows, dim) in [(1_000_000_000, 1_000_000_000, 192), (1, u32::MAX, 65_536)] {
        let err = Blob::from_bytes(&forged_blob(items, rows, dim)).unwrap_err();
        assert!(matches!(err, BlobError::Truncated { .. }), "{err}");
    }
    let err = Blob::from_bytes(&forged_blob(1, 1, 1 << 20)).unwrap_err();
    assert!(
        matches!(err, BlobError::OutOfRange { field: "dim", .. }),
        "{err}"
    );

    // A config.json claiming a huge model, with a tiny weights file: a named error, and the
    // RoPE tables stay bounded whatever max_position_embeddings says.
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/default");
    let mut files = ModelFiles::read_dir(&root).unwrap();
    let mut config: serde_json::Value = serde_json::from_slice(&files.config).unwrap();
    config["vocab_size"] = (1u64 << 20).into();
    config["hidden_size"] = (1u64 << 15).into();
    config["num_attention_heads"] = 64.into();
    config["num_key_value_heads"] = 64.into();
    config["max_position_embeddings"] = (1u64 << 20).into();
    files.config = serde_json::to_vec(&config).unwrap();
    files.weights = std::fs::read(root.join("model.safetensors")).unwrap()[..4096].to_vec();
    let err = Model::from_files(&files)
        .err()
        .expect("forged model must fail")
        .to_string();
    assert!(
        err.contains("model") || err.contains("safetensors"),
        "{err}"
    );
    config["hidden_size"] = (1u64 << 40).into();
    files.config = serde_json::to_vec(&config).unwrap();
    let err = Model::from_files(&files)
        .err()
        .expect("oversized config must fail")
        .to_string();
    assert!(err.contains("hidden_size"), "{err}");

    // A D3 row whose history holds 10^5 items (within the record bound, over the cell bound).
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("info")).unwrap();
    std::fs::create_dir_all(dir.path().join("test")).unwrap();
    std::fs::write(dir.path().join("info/i.txt"), "A\t0\nB\t1\n").unwrap();
    let history = vec!["0"; 100_000].join(", ");
    std::fs::write(
        dir.path().join("test/t.csv"),
        format!("user_id,history_item_title,item_title,history_item_id,item_id\nu,\"['A']\",B,\"[{history}]\",1\n"),
    )
    .unwrap();
    let err = l2d::data::dataset::load_d3_dir(dir.path())
        .unwrap_err()
        .to_string();
    assert!(err.contains("t.csv:2: field `history_item_id`"), "{err}");

    // A 256 MiB line in a raw log (a 10^8-item history would be the same): refused at the
    // record bound, without buffering it.
    let log = tempfile::tempdir().unwrap();
    std::fs::write(
        log.path().join("ratings.csv"),
        "userId,movieId,rating,timestamp\n1,1,5,1\n",
    )
    .unwrap();
    {
        use std::io::Write;
        let mut movies =
            std::io::BufWriter::new(std::fs::File::create(log.path().join("movies.csv")).unwrap());
        movies
            .write_all(b"movieId,title,genres\n1,A (1999),x\n2,")
            .unwrap();
        let chunk = vec![b'x'; 1 << 20];
        for _ in 0..256 {
            movies.write_all(&chunk).unwrap();
        }
        movies.write_all(b",x\n").unwrap();
    }
    let err = l2d::data::dataset::import_raw_log(
        &l2d::data::dataset::RawLogSpec::movielens(log.path()),
        "t",
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("movies.csv:3: field `record`") && err.contains("longer than 1048576 bytes"),
        "{err}"
    );

    let grown_mib = (peak_rss_kib() - before) / 1024;
    assert!(grown_mib < 64, "peak memory grew by {grown_mib} MiB");
}
