//! Native reference values for the browser tests (`tests/web.rs`): for fixed histories, the
//! hidden state and the top-20 of L2D-G, L2D-L (M = 20) and the manifest's default scoring
//! (what the widget ranks with), and the first tier's follows ranking, with the shipped model (multiplying as the manifest's weights say), memory blob and manifest. This test checks them against `tests/fixtures/native_results.json`; the headless
//! Chromium test checks the wasm build against the same file.
//! Regenerate after retraining: `L2D_BLESS=1 cargo test --release --test web_parity`.
#![cfg(not(target_arch = "wasm32"))]

mod common;
mod parity;

use std::path::Path;

use l2d::serve::manifest::Manifest;
use l2d::serve::recommend::{query_state, rank, Mode};
use parity::Case;

const HISTORIES: [&[&str]; 6] = [
    &["1", "2", "3"],
    &["260", "1196", "1210", "2571", "1240"],
    &[
        "318", "858", "50", "527", "593", "296", "2959", "47", "110", "356", "1",
    ],
    &["4993", "5952", "7153"],
    &[
        "2858", "1704", "4973", "7361", "2329", "1682", "3793", "6539", "5418", "44191",
    ],
    &["88744"],
];

#[test]
fn native_results_match_the_fixture() {
    let manifest_text = std::fs::read(common::default_dir().join("manifest.json")).unwrap();
    let scoring = Manifest::from_json(&manifest_text, "manifest.json")
        .unwrap()
        .scoring;
    // The manifest's weights, as the browser loads them.
    let mut model = common::default_model();
    model.net.set_weights(scoring.weights).unwrap();
    let blob = common::default_blob("memory.blob");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let follows_file = l2d::latent::follows::FollowsFile::from_bytes(
        &std::fs::read(common::default_dir().join(l2d::latent::follows::FOLLOWS_FILE)).unwrap(),
    )
    .unwrap();
    let (catalog, mut reps) =
        l2d::serve::recommend::load_blob(&model, blob.clone(), "memory.blob").unwrap();
    reps.apply_scoring(&scoring).unwrap();
    let cases: Vec<Case> = HISTORIES
        .iter()
        .map(|ids| {
            let history: Vec<u32> = ids
                .iter()
                .map(|id| catalog.require(id, "fixture").unwrap())
                .collect();
            let hidden = query_state(&model, &catalog, &history).unwrap();
            let top = |mode| -> Vec<String> {
                rank(&reps, &hidden, mode, 20, (&history, &history))
                    .unwrap()
                    .into_iter()
                    .map(|(i, _)| catalog.item(i).id.to_string())
                    .collect()
            };
            Case {
                history: ids.iter().map(|s| s.to_string()).collect(),
                global: top(Mode::Global),
                local: top(Mode::Local { m: 20 }),
                shipped: top(scoring.mode().unwrap()),
                follows: follows_file
                    .recommend(&history, 20, &history)
                    .into_iter()
                    .map(|i| catalog.item(i).id.to_string())
                    .collect(),
                hidden,
            }
        })
        .collect();
    let path = root.join("tests/fixtures/native_results.json");
    if std::env::var("L2D_BLESS").is_ok() {
        std::fs::write(&path, serde_json::to_string(&cases).unwrap()).unwrap();
        return;
    }
    let expected: Vec<Case> = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    assert!(!cases.is_empty(), "no cases");
    assert_eq!(
        expected.len(),
        cases.len(),
        "fixture and cases differ in length"
    );
    for (want, got) in expected.iter().zip(&cases) {
        assert_eq!(want.hidden.len(), got.hidden.len());
        assert_eq!(want.history, got.history);
        let diff = want
            .hidden
            .iter()
            .zip(&got.hidden)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(diff < 1e-4, "hidden differs by {diff}");
        assert_eq!(want.global, got.global);
        assert_eq!(want.local, got.local);
        assert_eq!(want.shipped, got.shipped);
        assert_eq!(want.follows, got.follows);
    }
}
