//! The wasm build in headless Chromium (wasm-bindgen-test): the shipped model and memory blob
//! loaded from bytes give the native hidden states (within 1e-4 with f32 weights, 1e-3 with int8) and the native top-20 (two near-tied items may trade places) for
//! global and local mode; the tokenizer gives the Oniguruma fixture's ids; the WebGPU backend
//! (SwiftShader) returns the CPU backend's top-K; `auto` falls back to the CPU without WebGPU;
//! bad input becomes a JS error, not a panic. Run by scripts/test.sh.
#![cfg(target_arch = "wasm32")]

use l2d::web::Recommender;
use serde::Deserialize;
use wasm_bindgen::JsValue;
use wasm_bindgen_futures::JsFuture;
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

const CONFIG: &[u8] = include_bytes!("../models/default/config.json");
const WEIGHTS: &[u8] = include_bytes!("../models/default/model.safetensors");
const TOKENIZER: &[u8] = include_bytes!("../models/default/tokenizer.json");
const META: &[u8] = include_bytes!("../models/default/l2d.json");
const MEMORY_BLOB: &[u8] = include_bytes!("../models/default/memory.blob");
// The shipped blobs' items parts (named by their content: a rebuilt catalog renames it, and
// `the_manifest_lists_the_items_part_this_test_includes` says to what).
const ITEMS: &[u8] = include_bytes!("../models/default/items-27a4ea0b43033b37-0.jsonl");
const ITEMS_FILE: &str = "items-27a4ea0b43033b37-0.jsonl";
const MANIFEST: &str = include_str!("../models/default/manifest.json");
const NATIVE: &str = include_str!("fixtures/native_results.json");
const TOKENIZER_IDS: &str = include_str!("fixtures/tokenizer_ids.json");

mod parity;
use parity::Case;

#[derive(Deserialize, Debug)]
#[serde(rename_all = "camelCase")]
struct Item {
    id: String,
    distance: f32,
}

#[derive(Deserialize, Debug)]
#[serde(rename_all = "camelCase")]
struct Result {
    items: Vec<Item>,
    backend: String,
    unknown: Vec<String>,
}

fn recommender() -> Recommender {
    Recommender::from_bytes(
        CONFIG,
        WEIGHTS,
        TOKENIZER,
        META,
        MEMORY_BLOB,
        ITEMS,
        Some(MANIFEST.to_string()),
    )
    .unwrap_or_else(|e| panic!("{:?}", JsValue::from(e)))
}

fn cases() -> Vec<Case> {
    serde_json::from_str(NATIVE).unwrap()
}

fn options(json: serde_json::Value) -> JsValue {
    json.serialize(&serde_wasm_bindgen::Serializer::json_compatible())
        .unwrap()
}

use serde::Serialize;

async fn recommend(
    r: &Recommender,
    history: &[String],
    opts: serde_json::Value,
) -> std::result::Result<Result, String> {
    let promise = r
        .recommend(
            serde_wasm_bindgen::to_value(history).unwrap(),
            options(opts),
        )
        .map_err(|e| format!("{:?}", JsValue::from(e)))?;
    let value = JsFuture::from(promise)
        .await
        .map_err(|e| format!("{e:?}"))?;
    Ok(serde_wasm_bindgen::from_value(value).unwrap())
}

fn ids(result: &Result) -> Vec<String> {
    result.items.iter().map(|i| i.id.clone()).collect()
}

/// The wasm ranking equals the native one, except that two items whose wasm scores are within
/// `1e-3` (relative) of each other may trade places: with int8 weights the two builds' query
/// states differ by up to 1e-3 (`hidden_state_equals_native`), enough to order a near tie
/// either way. Anything else (another item, a move between distinct scores) fails.
fn assert_same_ranking(got: &Result, want: &[String], what: &str) {
    let got_ids = ids(got);
    let mut sorted_got = got_ids.clone();
    let mut sorted_want = want.to_vec();
    sorted_got.sort();
    sorted_want.sort();
    assert_eq!(sorted_got, sorted_want, "{what}: not the same items");
    for (i, want_id) in want.iter().enumerate() {
        if got_ids[i] == *want_id {
            continue;
        }
        let j = got_ids.iter().position(|id| id == want_id).unwrap();
        let (a, b) = (got.items[i].distance, got.items[j].distance);
        assert!(
            (a - b).abs() <= 1e-3 * a.abs().max(b.abs()),
            "{what}: {want_id} at {j}, native at {i}, scores {b} vs {a} are not a near tie"
        );
    }
}

#[wasm_bindgen_test]
fn hidden_state_equals_native() {
    let r = recommender();
    // Which build this run tests (scripts/test.sh checks each pass ran the one it names).
    let info = r
        .info()
        .unwrap_or_else(|e| panic!("{:?}", JsValue::from(e)));
    let simd = js_sys::Reflect::get(&info, &"simd".into()).unwrap();
    web_sys_log(&format!("l2d-test: simd {}", simd.as_string().unwrap()));
    // With int8 weights the builds compute the same bits (every kernel sums in the native
    // order, the rotary tables are rounded from f64, the products are exact integer sums), so
    // the states are equal; with f32 weights candle's matrix product sums in another order.
    let weights = l2d::serve::manifest::Manifest::from_json(MANIFEST.as_bytes(), "manifest")
        .unwrap()
        .scoring
        .weights;
    let tolerance = match weights {
        l2d::model::Weights::F32 => 1e-4,
        l2d::model::Weights::Int8 => 0.0,
    };
    for case in cases() {
        let hidden = r
            .hidden(serde_wasm_bindgen::to_value(&case.history).unwrap())
            .unwrap_or_else(|e| panic!("{:?}", JsValue::from(e)));
        assert_eq!(hidden.len(), case.hidden.len());
        let diff = hidden
            .iter()
            .zip(&case.hidden)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(
            diff <= tolerance,
            "history {:?}: max |Δ| = {diff}",
            case.history
        );
    }
}

#[wasm_bindgen_test]
async fn top20_equals_native_global_local_and_shipped() {
    let r = recommender();
    for case in cases() {
        let global = recommend(
            &r,
            &case.history,
            serde_json::json!({"k": 20, "mode": "global", "backend": "cpu"}),
        )
        .await
        .unwrap();
        assert_same_ranking(&global, &case.global, &format!("global {:?}", case.history));
        let local = recommend(
            &r,
            &case.history,
            serde_json::json!({"k": 20, "mode": "local", "m": 20, "backend": "cpu"}),
        )
        .await
        .unwrap();
        assert_same_ranking(&local, &case.local, &format!("local {:?}", case.history));
        // No mode: the manifest's default scoring, what the widget ranks with.
        let shipped = recommend(
            &r,
            &case.history,
            serde_json::json!({"k": 20, "backend": "cpu"}),
        )
        .await
        .unwrap();
        assert_same_ranking(
            &shipped,
            &case.shipped,
            &format!("shipped {:?}", case.history),
        );
    }
}

/// The int8 layer product in wasm reads whole blocks of four weight rows interleaved
/// (`kernel::quads`) and the rows past the last block one at a time: each output equals, bit
/// for bit, the product with that weight row alone (quantization is per row, so its integers
/// and scale are the same), and the integers read back in row order, for widths around the
/// chunk of eight, row counts around the block of four, and 1–5 activation rows.
#[wasm_bindgen_test]
fn the_int8_product_reads_its_blocks_as_rows() {
    use l2d::kernel::{linear_q, QuantRows};
    for (rows, inp, out) in [
        (1, 192, 8),
        (5, 13, 6),
        (2, 7, 9),
        (3, 768, 4),
        (4, 16, 3),
        (2, 33, 17),
    ] {
        let case = format!("{rows}×{inp}→{out}");
        let wave = |seed: usize, n: usize| -> Vec<f32> {
            (0..n)
                .map(|i| {
                    (((i * 7919 + seed * 104729) % 2001) as f32 / 1000.0 - 1.0) * (1 + i % 3) as f32
                })
                .collect()
        };
        let x = wave(1, rows * inp);
        let w = wave(2, out * inp);
        let bias = wave(3, out);
        let whole = QuantRows::new(&w, inp);
        let got = linear_q(&x, &whole, Some(&bias));
        let mut row_major = Vec::new();
        for o in 0..out {
            let one = QuantRows::new(&w[o * inp..(o + 1) * inp], inp);
            row_major.extend(one.row_major());
            let want = linear_q(&x, &one, Some(&bias[o..o + 1]));
            for r in 0..rows {
                assert_eq!(
                    got[r * out + o].to_bits(),
                    want[r].to_bits(),
                    "{case} at ({r}, {o})"
                );
            }
        }
        assert_eq!(whole.row_major(), row_major, "{case}: row order");
    }
}

/// The int8 memory rows' dot products (`kernel::i8_row_dots`, explicit `simd128`) equal the
/// plain integer sums for every width around the vector length, at the extreme values; so do
/// int4 rows' (`kernel::Nibbles`), which also unpack to the values packed.
#[wasm_bindgen_test]
fn i8_row_dots_equal_the_plain_sums() {
    for dim in [1, 8, 15, 16, 17, 31, 32, 33, 192, 193] {
        for rows in 0..10usize {
            let query: Vec<i16> = (0..dim)
                .map(|i| {
                    if i % 3 == 0 {
                        -32767
                    } else {
                        (i as i16) * 97 - 500
                    }
                })
                .collect();
            let values: Vec<i8> = (0..rows * dim)
                .map(|i| if i % 2 == 0 { -127 } else { (i % 255) as i8 })
                .collect();
            let want: Vec<i32> = values
                .chunks_exact(dim)
                .map(|row| {
                    row.iter()
                        .zip(&query)
                        .map(|(&v, &q)| v as i32 * q as i32)
                        .sum()
                })
                .collect();
            let mut got = vec![0; rows];
            l2d::kernel::i8_row_dots(&query, &values, &mut got);
            assert_eq!(got, want, "dim {dim}, rows {rows}");
            // int4 rows (the extremes −8 and 7 included), packed two per byte.
            let values: Vec<i8> = values.iter().map(|&v| (v & 15) - 8).collect();
            let packed = l2d::kernel::Nibbles::pack(&values, dim).unwrap();
            assert_eq!(
                packed.unpack_rows(0..rows),
                values,
                "dim {dim}, rows {rows}"
            );
            let mut want = vec![0; rows];
            l2d::kernel::i8_row_dots(&query, &values, &mut want);
            packed.dots(&query, &mut got);
            assert_eq!(got, want, "int4, dim {dim}, rows {rows}");
        }
    }
}

#[wasm_bindgen_test]
fn tokenizer_ids_equal_the_oniguruma_fixture() {
    #[derive(Deserialize)]
    struct TokCase {
        text: String,
        ids: Vec<u32>,
    }
    let tokenizer =
        l2d::data::tokenizer::Tokenizer::from_bytes(TOKENIZER, "tokenizer.json").unwrap();
    let cases: Vec<TokCase> = serde_json::from_str(TOKENIZER_IDS).unwrap();
    assert!(cases.len() > 3000);
    for case in cases {
        assert_eq!(
            tokenizer.encode(&case.text).unwrap(),
            case.ids,
            "{:?}",
            case.text
        );
    }
}

async fn has_webgpu_adapter() -> bool {
    let navigator = js_sys::Reflect::get(&js_sys::global(), &"navigator".into()).unwrap();
    let gpu = js_sys::Reflect::get(&navigator, &"gpu".into()).unwrap();
    if gpu.is_undefined() || gpu.is_null() {
        return false;
    }
    let request = js_sys::Reflect::get(&gpu, &"requestAdapter".into()).unwrap();
    let promise: js_sys::Promise = js_sys::Function::from(request).call0(&gpu).unwrap().into();
    let adapter = JsFuture::from(promise).await.unwrap_or(JsValue::NULL);
    !adapter.is_null() && !adapter.is_undefined()
}

#[wasm_bindgen_test]
async fn auto_backend_uses_a_hardware_webgpu_adapter_and_cpu_otherwise() {
    let r = recommender();
    let case = &cases()[1];
    let cpu = recommend(
        &r,
        &case.history,
        serde_json::json!({"k": 20, "backend": "cpu"}),
    )
    .await
    .unwrap();
    let auto = recommend(
        &r,
        &case.history,
        serde_json::json!({"k": 20, "backend": "auto"}),
    )
    .await
    .unwrap();
    assert_eq!(ids(&auto), ids(&cpu));
    if has_webgpu_adapter().await {
        // `auto` takes a hardware adapter only; SwiftShader (device type Cpu) loses to the CPU.
        let forced = recommend(
            &r,
            &case.history,
            serde_json::json!({"k": 20, "backend": "webgpu"}),
        )
        .await
        .unwrap();
        assert!(forced.backend.starts_with("webgpu"), "{}", forced.backend);
        if forced.backend.ends_with(", Cpu)") {
            assert_eq!(auto.backend, "cpu", "software adapter: {}", forced.backend);
        } else {
            assert!(auto.backend.starts_with("webgpu"), "{}", auto.backend);
        }
        for (mode, m) in [("global", 20), ("local", 20), ("density", 20)] {
            for case in cases() {
                let opts = |backend: &str| serde_json::json!({"k": 20, "mode": mode, "m": m, "backend": backend});
                let on_gpu = recommend(&r, &case.history, opts("webgpu")).await.unwrap();
                let on_cpu = recommend(&r, &case.history, opts("cpu")).await.unwrap();
                assert_eq!(ids(&on_gpu), ids(&on_cpu), "{mode} {:?}", case.history);
            }
        }
        web_sys_log(&format!(
            "l2d-test: WebGPU adapter present, auto used {}",
            auto.backend
        ));
    } else {
        assert_eq!(auto.backend, "cpu");
        let err = recommend(&r, &case.history, serde_json::json!({"backend": "webgpu"}))
            .await
            .unwrap_err();
        assert!(err.contains("WebGPU is unavailable"), "{err}");
        web_sys_log("l2d-test: no WebGPU adapter, auto fell back to cpu");
    }
}

fn web_sys_log(message: &str) {
    let console = js_sys::Reflect::get(&js_sys::global(), &"console".into()).unwrap();
    let log = js_sys::Function::from(js_sys::Reflect::get(&console, &"log".into()).unwrap());
    log.call1(&console, &JsValue::from_str(message)).unwrap();
}

#[wasm_bindgen_test]
async fn odd_input_is_handled_not_crashed() {
    let r = recommender();
    let empty = recommend(&r, &[], serde_json::json!({"k": 5}))
        .await
        .unwrap();
    assert_eq!(empty.backend, "popularity");
    assert_eq!(empty.items.len(), 5);
    let unknown = recommend(
        &r,
        &["no such item".into(), "1".into()],
        serde_json::json!({"k": 3, "backend": "cpu"}),
    )
    .await
    .unwrap();
    assert_eq!(unknown.unknown, vec!["no such item".to_string()]);
    let long: Vec<String> = cases()[2].history.clone();
    assert!(long.len() > 10);
    let truncated = recommend(&r, &long, serde_json::json!({"k": 3, "backend": "cpu"}))
        .await
        .unwrap();
    assert_eq!(truncated.items.len(), 3);
    let zero = recommend(&r, &long, serde_json::json!({"k": 0, "backend": "cpu"}))
        .await
        .unwrap();
    assert!(zero.items.is_empty());
    let all = recommend(
        &r,
        &long,
        serde_json::json!({"k": 1e9, "excludeHistory": false, "backend": "cpu"}),
    )
    .await
    .unwrap();
    assert_eq!(all.items.len(), 3496);
    for bad in [
        serde_json::json!({"k": -1}),
        serde_json::json!({"k": 2.5}),
        serde_json::json!({"mode": "sideways"}),
        serde_json::json!({"mode": "local", "m": 0}),
        serde_json::json!({"backend": "tpu"}),
    ] {
        assert!(recommend(&r, &long, bad.clone()).await.is_err(), "{bad}");
    }
    let huge_m = recommend(
        &r,
        &long,
        serde_json::json!({"mode": "local", "m": 1e12, "backend": "cpu"}),
    )
    .await
    .unwrap();
    assert_eq!(huge_m.items.len(), 10);
    assert!(r
        .recommend(JsValue::from_str("not an array"), JsValue::UNDEFINED)
        .is_err());
    // Each broken file: (what, config, blob, items parts, manifest) and a word of its error.
    let changed = String::from_utf8(ITEMS.to_vec())
        .unwrap()
        .replacen("Toy Story", "Toy Storm", 1);
    type Case<'a> = (
        &'a str,
        &'a [u8],
        &'a [u8],
        &'a [u8],
        Option<&'a str>,
        &'a str,
    );
    let cases: [Case; 5] = [
        (
            "a cut blob",
            CONFIG,
            &MEMORY_BLOB[..100],
            ITEMS,
            None,
            "truncated",
        ),
        ("a bad config", b"{}", MEMORY_BLOB, ITEMS, None, "config"),
        (
            "a bad manifest",
            CONFIG,
            MEMORY_BLOB,
            ITEMS,
            Some("not json"),
            "manifest",
        ),
        (
            "a changed title",
            CONFIG,
            MEMORY_BLOB,
            changed.as_bytes(),
            None,
            "items",
        ),
        (
            "a cut line",
            CONFIG,
            MEMORY_BLOB,
            &ITEMS[..ITEMS.len() - 2],
            None,
            "line",
        ),
    ];
    for (name, config, blob, items, manifest, word) in cases {
        let built = Recommender::from_bytes(
            config,
            WEIGHTS,
            TOKENIZER,
            META,
            blob,
            items,
            manifest.map(str::to_string),
        );
        let err = match built {
            Ok(_) => panic!("{name}: accepted"),
            Err(e) => format!("{:?}", JsValue::from(e)),
        };
        assert!(err.contains(word), "{name}: {err}");
    }
}

/// An options object built in JS, so it can hold NaN and ±∞ (JSON cannot).
fn js_options(entries: &[(&str, JsValue)]) -> JsValue {
    let object = js_sys::Object::new();
    for (key, value) in entries {
        js_sys::Reflect::set(&object, &JsValue::from_str(key), value).unwrap();
    }
    object.into()
}

async fn settles_to_error(
    promise: std::result::Result<js_sys::Promise, wasm_bindgen::JsError>,
) -> bool {
    match promise {
        Err(_) => true,
        Ok(p) => JsFuture::from(p).await.is_err(),
    }
}

#[wasm_bindgen_test]
async fn every_export_rejects_wrong_types_and_non_finite_numbers() {
    let r = recommender();
    let history = serde_wasm_bindgen::to_value(&cases()[0].history).unwrap();
    let nan = JsValue::from_f64(f64::NAN);
    let inf = JsValue::from_f64(f64::INFINITY);
    let neg_inf = JsValue::from_f64(f64::NEG_INFINITY);
    let local = JsValue::from_str("local");
    // recommend: non-finite or mistyped options are errors naming the option.
    let message = match r.recommend(history.clone(), js_options(&[("k", nan.clone())])) {
        Err(e) => format!("{:?}", JsValue::from(e)),
        Ok(_) => panic!("k = NaN accepted"),
    };
    assert!(
        message.contains("option `k` must be a whole number"),
        "{message}"
    );
    for bad in [
        js_options(&[("k", nan.clone())]),
        js_options(&[("k", inf.clone())]),
        js_options(&[("k", neg_inf.clone())]),
        js_options(&[("mode", local.clone()), ("m", nan.clone())]),
        js_options(&[("mode", local.clone()), ("m", inf.clone())]),
        js_options(&[("k", JsValue::from_str("5"))]),
        js_options(&[("mode", JsValue::from_f64(3.0))]),
        js_options(&[("excludeHistory", JsValue::from_str("yes"))]),
        js_options(&[("backend", JsValue::TRUE)]),
        JsValue::from_f64(42.0),
        JsValue::from_str("k=5"),
    ] {
        assert!(
            settles_to_error(r.recommend(history.clone(), bad.clone())).await,
            "recommend accepted {bad:?}"
        );
    }
    // History entries of the wrong type: objects and booleans are errors, non-integral numbers
    // are reported unknown, null/undefined history means "no history".
    let entries =
        |values: &[JsValue]| -> JsValue { values.iter().collect::<js_sys::Array>().into() };
    for bad in [
        entries(&[js_sys::Object::new().into()]),
        entries(&[JsValue::TRUE]),
        entries(&[JsValue::NULL]),
        JsValue::from_f64(1.0),
        js_sys::Object::new().into(),
    ] {
        assert!(
            settles_to_error(r.recommend(bad.clone(), JsValue::UNDEFINED)).await,
            "recommend accepted history {bad:?}"
        );
        assert!(r.hidden(bad.clone()).is_err(), "hidden accepted {bad:?}");
        assert!(
            r.beam(bad.clone(), 1.0, 5.0).is_err(),
            "beam accepted {bad:?}"
        );
    }
    let odd_numbers = entries(&[nan.clone(), inf.clone(), JsValue::from_f64(1.5)]);
    let result: Result = serde_wasm_bindgen::from_value(
        JsFuture::from(r.recommend(odd_numbers, JsValue::UNDEFINED).unwrap())
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(result.unknown, vec!["NaN", "inf", "1.5"]);
    assert_eq!(result.backend, "popularity");
    for value in [JsValue::NULL, JsValue::UNDEFINED] {
        assert!(!settles_to_error(r.recommend(value.clone(), JsValue::UNDEFINED)).await);
        assert_eq!(r.hidden(value).unwrap().len(), 192);
    }
    // beam: width and k must be whole numbers.
    for (beam, k) in [
        (f64::NAN, 5.0),
        (f64::INFINITY, 5.0),
        (-1.0, 5.0),
        (1.0, f64::NAN),
        (1.0, -3.0),
        (2.5, 5.0),
    ] {
        assert!(
            r.beam(history.clone(), beam, k).is_err(),
            "beam({beam}, {k})"
        );
    }
    // items and info take nothing and always answer.
    let items = js_sys::Array::from(&r.items().unwrap());
    assert!(items.length() == 3496);
    let first = items.get(0);
    let field = |name: &str| js_sys::Reflect::get(&first, &name.into()).unwrap();
    assert!(field("id").as_string().is_some_and(|id| !id.is_empty()));
    assert!(field("title").as_string().is_some_and(|t| !t.is_empty()));
    assert!(field("count").as_f64().is_some_and(|c| c >= 0.0));
    // info names the weights file the manifest chose, by the rule weightsFile exports.
    let info = r.info().unwrap();
    let weights_file = js_sys::Reflect::get(&info, &"weightsFile".into()).unwrap();
    assert_eq!(
        weights_file.as_string(),
        Some(l2d::web::weights_file(MANIFEST).unwrap())
    );
    assert!(l2d::web::weights_file("{}").is_err());
    // load: options must be an object with a string manifestUrl.
    for bad in [
        JsValue::from_f64(3.0),
        JsValue::NULL,
        js_options(&[("manifestUrl", JsValue::from_f64(5.0))]),
        js_options(&[("manifestUrl", nan)]),
    ] {
        assert!(
            Recommender::load(bad.clone()).await.is_err(),
            "load accepted {bad:?}"
        );
    }
}

#[wasm_bindgen_test]
fn an_empty_catalog_blob_is_refused_by_name() {
    let files = l2d::model::ModelFiles {
        config: CONFIG.to_vec(),
        weights: WEIGHTS.to_vec(),
        tokenizer: TOKENIZER.to_vec(),
        meta: META.to_vec(),
    };
    let empty = l2d::latent::blob::Blob::new(
        l2d::latent::blob::BlobKind::Global,
        l2d::model::model_fingerprint(&files),
        &l2d::data::catalog::Catalog::new(Vec::new(), "test").unwrap(),
        Vec::new(),
        l2d::latent::score::ItemMatrix::from_f32(Vec::new(), 192, Vec::new()).unwrap(),
    )
    .unwrap();
    let parts = empty.items_parts().concat();
    let empty = empty.to_bytes();
    let err = match Recommender::from_bytes(CONFIG, WEIGHTS, TOKENIZER, META, &empty, &parts, None)
    {
        Ok(_) => panic!("an empty catalog blob was accepted"),
        Err(e) => format!("{:?}", JsValue::from(e)),
    };
    assert!(err.contains("no items"), "{err}");
}

/// In wasm as natively: a history grown by one click reuses the previous prompt's cache and
/// gives the state of a full forward pass within 1e-5 with f32 weights (1e-3 with int8, where
/// a rounding difference can move an activation by one integer level; `tests/model.rs`); a
/// repeated one is memoized.
#[wasm_bindgen_test]
fn a_grown_history_reuses_the_cache_and_equals_a_full_pass() {
    use l2d::model::Weights;
    for (weights, tolerance) in [(Weights::F32, 1e-5), (Weights::Int8, 1e-3)] {
        grown_history_session(weights, tolerance);
    }
}

fn grown_history_session(weights: l2d::model::Weights, tolerance: f32) {
    use l2d::model::{Model, ModelFiles, QueryEncoder, Reuse};
    let mut model = Model::from_files(&ModelFiles {
        config: CONFIG.to_vec(),
        weights: WEIGHTS.to_vec(),
        tokenizer: TOKENIZER.to_vec(),
        meta: META.to_vec(),
    })
    .unwrap();
    model.net.set_weights(weights).unwrap();
    let blob = l2d::latent::blob::Blob::from_bytes(MEMORY_BLOB)
        .unwrap()
        .with_items([(ITEMS_FILE, ITEMS)])
        .unwrap();
    let titles: Vec<&str> = blob.items.iter().take(8).map(|i| i.title).collect();
    let mut encoder = QueryEncoder::new();
    for n in 1..=titles.len() {
        let ids = model.prompt_ids(&titles[..n]).unwrap();
        let (state, reuse) = encoder.encode(&model, &ids).unwrap();
        let expected = if n == 1 {
            matches!(reuse, Reuse::Full)
        } else {
            matches!(reuse, Reuse::Extended { .. })
        };
        assert!(expected, "{n} titles: {reuse:?}");
        let full = model
            .last_hidden_batch(std::slice::from_ref(&ids))
            .unwrap()
            .remove(0);
        let gap = state
            .iter()
            .zip(&full)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(
            gap <= tolerance,
            "{n} titles, {weights:?} weights: differs from a full pass by {gap}"
        );
        assert_eq!(encoder.encode(&model, &ids).unwrap(), (state, Reuse::Memo));
    }
}

/// The items part included above is the one the shipped manifest lists (after a rebuilt
/// catalog, rename `ITEMS`/`ITEMS_FILE` to what this says).
#[wasm_bindgen_test]
fn the_manifest_lists_the_items_part_this_test_includes() {
    let manifest =
        l2d::serve::manifest::Manifest::from_json(MANIFEST.as_bytes(), "manifest").unwrap();
    assert_eq!(manifest.items, vec![ITEMS_FILE.to_string()]);
}
