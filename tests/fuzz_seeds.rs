//! Every fuzz target's check (`tests/fuzz/checks.rs`) on every input of its seed corpus
//! (`tests/fuzz/seeds/<target>/`), with the stable toolchain: the inputs libFuzzer starts from,
//! and every crash input committed there after a fix, stay checked by `cargo test`. Fuzzing
//! itself (nightly, sanitizers, new inputs) is `scripts/fuzz.sh`.
#![cfg(not(target_arch = "wasm32"))]

#[path = "fuzz/checks.rs"]
mod checks;

use std::path::Path;

#[test]
fn every_seed_input_passes_its_targets_check() {
    // (target, its check)
    type Check = fn(&[u8]);
    let cases: [(&str, Check); 6] = [
        ("blob", checks::blob),
        ("follows", checks::follows),
        ("model_files", checks::model_files),
        ("pyliteral", checks::pyliteral),
        ("raw_log", checks::raw_log),
        ("recommend", checks::recommend),
    ];
    let seeds = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz/seeds");
    for (target, check) in cases {
        let dir = seeds.join(target);
        let mut inputs: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|entry| entry.unwrap().path())
            .collect();
        inputs.sort();
        assert!(
            !inputs.is_empty(),
            "{target}: no seed inputs in {}",
            dir.display()
        );
        for input in inputs {
            let data = std::fs::read(&input).unwrap();
            let outcome = std::panic::catch_unwind(|| check(&data));
            assert!(
                outcome.is_ok(),
                "{target}: {} fails its check",
                input.display()
            );
        }
    }
    // Each target's directory is in the table (a new target's seeds are replayed too).
    let mut listed: Vec<String> = std::fs::read_dir(&seeds)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    listed.sort();
    assert_eq!(
        listed,
        cases.iter().map(|(t, _)| t.to_string()).collect::<Vec<_>>()
    );
}
