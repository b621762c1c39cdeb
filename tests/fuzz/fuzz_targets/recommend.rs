//! The recommend path on arbitrary histories and options, with the shipped model and memory
//! blob: entries are lines of the input (item ids, titles or junk), followed by k, mode and m
//! taken from its first bytes. Never panics; a result holds at most k distinct items, none of
//! them excluded, ordered by distance (popular items for an empty history).
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

use l2d::data::catalog::Catalog;
use l2d::model::Model;
use l2d::serve::recommend::{load_blob, recommend, Mode, Representations, Request};

struct Shipped {
    model: Model,
    catalog: Catalog,
    reps: Representations,
}

fn shipped() -> &'static Shipped {
    static SHIPPED: OnceLock<Shipped> = OnceLock::new();
    SHIPPED.get_or_init(|| {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/default");
        let model = Model::load_dir(&dir).expect("shipped model");
        let blob = l2d::latent::blob::Blob::read_file(&dir.join("memory.blob")).expect("shipped blob parses");
        let (catalog, reps) = load_blob(&model, blob, "memory.blob").expect("blob fits model");
        Shipped {
            model,
            catalog,
            reps,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((head, rest)) = data.split_first_chunk::<4>() else {
        return;
    };
    let s = shipped();
    let k = usize::from(u16::from_le_bytes([head[0], head[1]]));
    let mode = match head[2] % 3 {
        0 => Mode::Global,
        // m = 0 is refused by the callers' option parsing; the library must not panic on it.
        1 => Mode::Local { m: usize::from(head[3]) },
        _ => Mode::Local { m: usize::MAX },
    };
    let text = String::from_utf8_lossy(rest);
    let history: Vec<_> = text
        .split('\n')
        .filter_map(|entry| s.catalog.resolve(entry))
        .collect();
    let exclude = if head[2] & 4 == 0 { history.clone() } else { Vec::new() };
    let request = Request { history: &history, mode, k, exclude: &exclude };
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
            assert!(prev.is_nan() || cur.is_nan() || prev <= cur, "not sorted: {prev} > {cur}");
        }
    }
});
