//! The fuzz targets' checks, one function per target: what `fuzz_targets/*.rs` hand to
//! libFuzzer (`scripts/fuzz.sh`, nightly), and what `tests/fuzz_seeds.rs` replays on every
//! seed input with the stable toolchain (part of `cargo test`). Each never panics on any input;
//! where it asserts, the assertion is the property fuzzed.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::OnceLock;

/// The shipped model directory, from this crate or from the fuzz crate.
fn shipped_dir() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let here = manifest.join("models/default");
    if here.is_dir() {
        here
    } else {
        manifest.join("../../models/default")
    }
}

/// The blob reader on arbitrary bytes: never panics, and a blob it accepts serializes back to
/// exactly the same bytes (compared as bytes: NaN payload values are legal and unequal).
/// Inputs that do not start like a blob go to the items-part reader instead, which must not
/// panic either and keeps every item it accepts.
pub fn blob(data: &[u8]) {
    use l2d::latent::blob::{Blob, ItemsReader, MAGIC};

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
}

fn shipped_files() -> &'static l2d::model::ModelFiles {
    static FILES: OnceLock<l2d::model::ModelFiles> = OnceLock::new();
    FILES.get_or_init(|| {
        let dir = shipped_dir();
        l2d::model::ModelFiles::read_dir(&dir).expect("shipped model")
    })
}

/// The model loader on a fuzzed config.json or fuzzed safetensors bytes (the other files are
/// the shipped ones): never panics, errors are values.
pub fn model_files(data: &[u8]) {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let mut files = shipped_files().clone();
    if selector % 2 == 0 {
        files.config = rest.to_vec();
        let _ = l2d::model::ModelConfig::from_json(rest, "config.json");
    } else {
        files.weights = rest.to_vec();
    }
    let _ = l2d::model::Model::from_files(&files);
}

/// The Python list-literal parser of D3 CSV cells on arbitrary text: never panics.
pub fn pyliteral(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = l2d::data::pyliteral::parse_list(text);
    }
}

/// The dataset readers on arbitrary bytes: the first byte picks the D3 test-split CSV (with a
/// small catalog), the raw-log interactions CSV or the raw-log items CSV (MovieLens layout,
/// the other file fixed). Never panics; errors are values.
pub fn raw_log(data: &[u8]) {
    let Some((&selector, data)) = data.split_first() else {
        return;
    };
    let dir = std::env::temp_dir().join(format!("l2d-fuzz-{}", std::process::id()));
    match selector % 3 {
        0 => {
            let _ = std::fs::create_dir_all(dir.join("info"));
            let _ = std::fs::create_dir_all(dir.join("test"));
            let _ = std::fs::write(dir.join("info/i.txt"), "A, \"x\"\t0\nB\t1\n<a_1>\tC\t2\n");
            let _ = std::fs::write(dir.join("test/t.csv"), data);
            let _ = l2d::data::dataset::load_d3_dir(&dir);
        }
        which => {
            let _ = std::fs::create_dir_all(&dir);
            let movies = b"movieId,title,genres\n1,\"A, The (1999)\",x\n2,B (2000),y\n";
            let ratings = b"userId,movieId,rating,timestamp\n1,1,5,10\n1,2,4,20\n";
            let (r, m): (&[u8], &[u8]) = if which == 1 {
                (data, movies)
            } else {
                (ratings, data)
            };
            let _ = std::fs::write(dir.join("ratings.csv"), r);
            let _ = std::fs::write(dir.join("movies.csv"), m);
            let _ = l2d::data::dataset::import_raw_log(
                &l2d::data::dataset::RawLogSpec::movielens(&dir),
                "f",
            );
        }
    }
}

struct Shipped {
    model: l2d::model::Model,
    catalog: l2d::data::catalog::Catalog,
    reps: l2d::serve::recommend::Representations,
}

fn shipped_recommender() -> &'static Shipped {
    use l2d::serve::recommend::load_blob;
    static SHIPPED: OnceLock<Shipped> = OnceLock::new();
    SHIPPED.get_or_init(|| {
        let dir = shipped_dir();
        let model = l2d::model::Model::load_dir(&dir).expect("shipped model");
        let blob = l2d::latent::blob::Blob::read_file(&dir.join("memory.blob"))
            .expect("shipped blob parses");
        let (catalog, reps) = load_blob(&model, blob, "memory.blob").expect("blob fits model");
        Shipped {
            model,
            catalog,
            reps,
        }
    })
}

/// The recommend path on arbitrary histories and options, with the shipped model and memory
/// blob: entries are lines of the input (item ids, titles or junk), followed by k, mode and m
/// taken from its first bytes. Never panics; a result holds at most k distinct items, none of
/// them excluded, ordered by distance (popular items for an empty history).
pub fn recommend(data: &[u8]) {
    use l2d::serve::recommend::{recommend, Mode, Request};

    let Some((head, rest)) = data.split_first_chunk::<4>() else {
        return;
    };
    let s = shipped_recommender();
    let k = usize::from(u16::from_le_bytes([head[0], head[1]]));
    let mode = match head[2] % 3 {
        0 => Mode::Global,
        // m = 0 is refused by the callers' option parsing; the library must not panic on it.
        1 => Mode::Local {
            m: usize::from(head[3]),
        },
        _ => Mode::Local { m: usize::MAX },
    };
    let text = String::from_utf8_lossy(rest);
    let history: Vec<_> = text
        .split('\n')
        .filter_map(|entry| s.catalog.resolve(entry))
        .collect();
    let exclude = if head[2] & 4 == 0 {
        history.clone()
    } else {
        Vec::new()
    };
    let request = Request {
        history: &history,
        mode,
        k,
        exclude: &exclude,
    };
    let Ok(items) = recommend(&s.model, &s.catalog, &s.reps, &request) else {
        return;
    };
    assert!(items.len() <= k);
    let mut seen = std::collections::HashSet::new();
    for (i, (item, _)) in items.iter().enumerate() {
        assert!(seen.insert(*item), "item {item} twice");
        assert!(!exclude.contains(item), "excluded item {item} returned");
        assert!((*item as usize) < s.catalog.len());
        if i > 0 {
            let (prev, cur) = (items[i - 1].1, items[i].1);
            assert!(
                prev.is_nan() || cur.is_nan() || prev <= cur,
                "not sorted: {prev} > {cur}"
            );
        }
    }
}

/// The follows file reader (the widget's first tier) on arbitrary bytes: never panics, and a
/// file it accepts serializes back to exactly the same bytes.
pub fn follows(data: &[u8]) {
    use l2d::latent::follows::FollowsFile;
    if let Ok(file) = FollowsFile::from_bytes(data) {
        assert_eq!(file.to_bytes(), data);
        let history: Vec<u32> = (0..file.popularity.len() as u32).take(3).collect();
        let ranking = file.recommend(&history, 5, &history);
        assert!(ranking.len() <= 5);
    }
}
