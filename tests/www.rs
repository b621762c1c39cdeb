//! What the browser gets. The relaxed-SIMD probe of `www/l2d-simd.js` validates only where
//! relaxed SIMD is on, and the simd128 module (`pkg/l2d_bg.wasm`) holds no relaxed-SIMD
//! instruction, so an engine without relaxed SIMD (WebKit today) never compiles one it would
//! reject; the relaxed module needs it. And nothing under `www/` carries an inline style, which a
//! strict Content-Security-Policy (`style-src 'self'`) would block.
#![cfg(not(target_arch = "wasm32"))]

use std::path::Path;

use wasmparser::{Validator, WasmFeatures};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Validates `bytes` with or without relaxed SIMD (every other default feature on).
fn validates(bytes: &[u8], relaxed: bool) -> Result<(), String> {
    let mut features = WasmFeatures::default();
    features.set(WasmFeatures::RELAXED_SIMD, relaxed);
    Validator::new_with_features(features)
        .validate_all(bytes)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// The probe module's bytes, read from `www/l2d-simd.js` (the array the worker validates).
fn probe() -> Vec<u8> {
    let js = std::fs::read_to_string(root().join("www/l2d-simd.js")).unwrap();
    let start = js.find("new Uint8Array([").expect("the probe array") + "new Uint8Array([".len();
    let end = start + js[start..].find("])").unwrap();
    js[start..end]
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<u8>().unwrap())
        .collect()
}

#[test]
fn the_relaxed_simd_probe_validates_only_with_relaxed_simd() {
    let bytes = probe();
    let cases = [(true, true), (false, false)];
    for (relaxed, valid) in cases {
        assert_eq!(
            validates(&bytes, relaxed).is_ok(),
            valid,
            "relaxed SIMD {relaxed}"
        );
    }
}

/// Each built module against the features an engine may lack. Needs `scripts/build-web.sh`'s
/// `pkg/` (`scripts/test.sh` runs it after the build with `--ignored`).
#[test]
#[ignore = "needs pkg/ from scripts/build-web.sh"]
fn the_simd128_module_holds_no_relaxed_simd_instruction() {
    let pkg = root().join("pkg");
    let read = |name: &str| {
        std::fs::read(pkg.join(name))
            .unwrap_or_else(|e| panic!("{name}: {e} (run scripts/build-web.sh first)"))
    };
    let simd128 = read("l2d_bg.wasm");
    let relaxed = read("l2d_relaxed_bg.wasm");
    let cases: [(&str, &[u8], bool, bool); 4] = [
        ("l2d_bg.wasm", &simd128, false, true),
        ("l2d_bg.wasm", &simd128, true, true),
        ("l2d_relaxed_bg.wasm", &relaxed, false, false),
        ("l2d_relaxed_bg.wasm", &relaxed, true, true),
    ];
    for (name, bytes, with_relaxed, valid) in cases {
        let result = validates(bytes, with_relaxed);
        assert_eq!(
            result.is_ok(),
            valid,
            "{name} with relaxed SIMD {with_relaxed}: {result:?}"
        );
    }
}

#[test]
fn nothing_under_www_carries_an_inline_style() {
    let mut offenders = Vec::new();
    for entry in std::fs::read_dir(root().join("www")).unwrap() {
        let path = entry.unwrap().path();
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        for (i, line) in text.lines().enumerate() {
            let code = line.trim_start();
            if code.starts_with("//") || code.starts_with('*') || code.starts_with("/*") {
                continue;
            }
            let lower = line.to_ascii_lowercase();
            // An inline <style> element in markup or made by script, or a style= attribute (in
            // markup or by setAttribute). Setting `element.style.x` goes through the CSSOM,
            // which a CSP allows.
            let element = lower.contains("<style") || lower.contains("createelement(\"style\"");
            let attribute = lower.contains(" style=") || lower.contains("setattribute(\"style\"");
            if element || attribute {
                offenders.push(format!("{}:{}: {line}", path.display(), i + 1));
            }
        }
    }
    assert!(offenders.is_empty(), "{}", offenders.join("\n"));
}
