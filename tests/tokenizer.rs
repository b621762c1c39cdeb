//! Tokenizer parity: the shipped tokenizer must give the same ids whichever regex engine runs it.
//! `tests/fixtures/tokenizer_ids.json` was written by the Oniguruma build (Hugging Face's default
//! engine: `L2D_BLESS=1 cargo test --release --features onig --test tokenizer`); the default
//! build uses fancy-regex, the engine of the wasm32 build, and must reproduce every id. The
//! browser test compares against the same fixture.
#![cfg(not(target_arch = "wasm32"))]

use std::path::Path;

use l2d::data::dataset::{import_raw_log, RawLogSpec};
use l2d::data::prompt::Template;
use l2d::data::tokenizer::Tokenizer;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
struct Case {
    text: String,
    ids: Vec<u32>,
}

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Every catalog title, a few prompts, and hostile strings.
fn texts() -> Vec<String> {
    let (dataset, _) = import_raw_log(
        &RawLogSpec::movielens(&root().join("data/ml-latest-small")),
        "ml",
    )
    .unwrap();
    let titles: Vec<&str> = dataset.catalog.items().map(|i| i.title).collect();
    let mut texts: Vec<String> = titles.iter().map(|t| t.to_string()).collect();
    for chunk in titles.chunks(7).take(50) {
        texts.push(Template::Compact.prompt(chunk));
    }
    texts.extend(
        [
            "Amélie (Fabuleux destin d'Amélie Poulain, Le) (2001)",
            "Crouching Tiger, Hidden Dragon (Wo hu cang long) (2000)",
            "東京物語 — Tōkyō Monogatari (1953) 🎬",
            "  leading and trailing spaces  ",
            "<img src=x onerror=alert(1)>",
            "tab\tinside, \"quotes\" and 'apostrophes' … ¿¡",
            "a<|sep|>b<|bos|>",
        ]
        .map(String::from),
    );
    texts
}

#[test]
fn ids_match_the_oniguruma_fixture() {
    let tokenizer = Tokenizer::from_file(&root().join("models/default/tokenizer.json")).unwrap();
    let fixture = root().join("tests/fixtures/tokenizer_ids.json");
    let cases: Vec<Case> = texts()
        .into_iter()
        .map(|text| {
            let ids = tokenizer.encode(&text).unwrap();
            Case { text, ids }
        })
        .collect();
    if std::env::var("L2D_BLESS").is_ok() {
        if !cfg!(feature = "onig") {
            panic!("bless the fixture with --features onig (the reference engine)");
        }
        std::fs::write(&fixture, serde_json::to_string(&cases).unwrap()).unwrap();
        return;
    }
    let expected: Vec<Case> = serde_json::from_slice(&std::fs::read(&fixture).unwrap()).unwrap();
    assert_eq!(expected.len(), cases.len());
    for (want, got) in expected.iter().zip(&cases) {
        assert_eq!(want.text, got.text);
        assert_eq!(want.ids, got.ids, "ids differ for {:?}", got.text);
    }
}

#[test]
fn packed_tokens_equal_prompt_tokens() {
    // Training concatenates per-title target ids; the prompt of the same history must
    // tokenize to exactly those ids (special tokens split the text).
    let tokenizer = Tokenizer::from_file(&root().join("models/default/tokenizer.json")).unwrap();
    let t = Template::Compact;
    let history = [
        "Toy Story (1995)",
        "Amélie (Fabuleux destin d'Amélie Poulain, Le) (2001)",
        "Heat (1995)",
    ];
    let mut packed = vec![tokenizer.token_id(l2d::data::prompt::BOS).unwrap()];
    for title in history {
        packed.extend(tokenizer.encode(&t.target(title)).unwrap());
    }
    assert_eq!(tokenizer.encode(&t.prompt(&history)).unwrap(), packed);
    assert_eq!(
        *packed.last().unwrap(),
        tokenizer.token_id(l2d::data::prompt::SEP).unwrap()
    );
}
