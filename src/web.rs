//! The browser API (wasm-bindgen). Thin: it converts JavaScript values, calls the core
//! (model, recommend, decode, gpu) and converts back; network and cache I/O live in
//! `www/l2d-fetch.js`. Every error reaches JavaScript as an `Error` with the library's message.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

use serde::{Deserialize, Serialize};
use wasm_bindgen::prelude::*;

use crate::data::catalog::{Catalog, ItemIndex};
use crate::latent::blob::{Blob, BlobSource, ItemsReader};
use crate::model::{Model, ModelFiles, QueryEncoder};
use crate::serve::backend::{Backend, Scorers};
use crate::serve::decode::{beam_search, ranking, TitleTrie, MAX_TITLE_TOKENS};
use crate::serve::manifest::{Manifest, Scoring};
use crate::serve::recommend::{
    load_blob, prepare_with, query_state, Mode, Representations, Request,
};
use crate::util::hex;

#[wasm_bindgen(module = "/www/l2d-fetch.js")]
extern "C" {
    #[wasm_bindgen(catch, js_name = fetchBytes)]
    async fn fetch_bytes(
        url: &str,
        file: &str,
        cache_name: JsValue,
        on_progress: JsValue,
        expected_bytes: f64,
    ) -> Result<JsValue, JsValue>;
    #[wasm_bindgen(js_name = cachePut)]
    async fn cache_put(url: &str, cache_name: JsValue, bytes: js_sys::Uint8Array) -> JsValue;
    #[wasm_bindgen(js_name = cacheDelete)]
    async fn cache_delete(url: &str, cache_name: JsValue);
    #[wasm_bindgen(js_name = cachePrune)]
    async fn cache_prune(cache_name: JsValue, prefix: &str, keep: js_sys::Array) -> JsValue;
    fn now() -> f64;
}

#[wasm_bindgen(typescript_custom_section)]
const TS_TYPES: &'static str = r#"
/** Options of Recommender.load. */
export interface LoadOptions {
  /** URL of manifest.json (file names in it resolve against this URL). */
  manifestUrl: string;
  /** Called as bytes arrive: {file, loaded, total, cached}. total is 0 when unknown. */
  onProgress?: (p: { file: string; loaded: number; total: number; cached: boolean }) => void;
  /** Cache API bucket; null or "" disables caching. Default "l2d-v1". */
  cacheName?: string | null;
  /** Which blob of the manifest to use: "memory" (global + local modes) or "global". Default "memory". */
  blob?: "memory" | "global";
}
/** Options of Recommender.recommend. */
export interface RecommendOptions {
  /** Number of items to return (default 10; 0 returns none; capped at the catalog size). */
  k?: number;
  /** "global" (L2D-G), "local" (L2D-L) or "density"; default: the manifest's scoring.mode, else "global". */
  mode?: "global" | "local" | "density";
  /** Neighbours per item for local mode (default: the manifest's scoring.m, else 20). */
  m?: number;
  /** Leave history items out of the list (default true). */
  excludeHistory?: boolean;
  /** "auto" (WebGPU on a hardware adapter, else the CPU; default), "cpu" or "webgpu" (any adapter, software ones too). */
  backend?: "auto" | "cpu" | "webgpu";
}
/** One recommended item. */
export interface RecommendedItem { id: string; title: string; distance: number; }
/** Result of Recommender.recommend. */
export interface RecommendResult {
  items: RecommendedItem[];
  /** Prompt + forward pass, milliseconds. */
  encodeMs: number;
  /** Distances + top-K, milliseconds. */
  scoreMs: number;
  /** "cpu", "webgpu: <adapter>", or "popularity" for an empty history. */
  backend: string;
  /** History entries used (ids, after truncation to the last 10 known items). */
  historyUsed: string[];
  /** History entries that matched no item id or title (ignored). */
  unknown: string[];
}
/** Result of Recommender.beam: the language-space baseline. */
export interface BeamResult { items: RecommendedItem[]; ms: number; beam: number; }
"#;

fn js_error(e: impl std::fmt::Display) -> JsError {
    JsError::new(&e.to_string())
}

fn js_value_error(e: JsValue) -> JsError {
    let message = e
        .as_string()
        .or_else(|| {
            js_sys::Reflect::get(&e, &"message".into())
                .ok()
                .and_then(|m| m.as_string())
        })
        .unwrap_or_else(|| format!("{e:?}"));
    JsError::new(&message)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RecommendOptions {
    k: Option<f64>,
    mode: Option<String>,
    m: Option<f64>,
    exclude_history: Option<bool>,
    backend: Option<String>,
}

/// A whole number option within bounds, or a clear error (NaN, ∞, negative, fractional).
fn count_option(
    name: &str,
    value: Option<f64>,
    default: usize,
    max: usize,
) -> Result<usize, JsError> {
    let Some(v) = value else { return Ok(default) };
    if !v.is_finite() || v < 0.0 || v.fract() != 0.0 {
        return Err(JsError::new(&format!(
            "option `{name}` must be a whole number ≥ 0, got {v}"
        )));
    }
    Ok((v as usize).min(max))
}

#[derive(Serialize)]
struct RecommendedItem {
    id: String,
    title: String,
    distance: f32,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct RecommendResult {
    items: Vec<RecommendedItem>,
    encode_ms: f64,
    score_ms: f64,
    backend: String,
    history_used: Vec<String>,
    unknown: Vec<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum HistoryEntry {
    Text(String),
    Number(f64),
}

struct Inner {
    model: Model,
    catalog: Catalog,
    reps: Representations,
    scoring: Scoring,
    /// The weights file loaded ([`Manifest::weights_file`]), when a manifest named it.
    weights_file: Option<&'static str>,
    trie: RefCell<Option<Rc<TitleTrie>>>,
    /// The session's query encoder: a history grown by a click reuses the previous prompt's
    /// key/value cache, a repeated one its memoized state.
    encoder: RefCell<QueryEncoder>,
}

/// The weights file a page fetches for `manifest` (the text of a `manifest.json`): the rule of
/// [`Manifest::weights_file`], for tools that load a deployed folder themselves.
#[wasm_bindgen(js_name = weightsFile)]
pub fn weights_file(manifest: &str) -> Result<String, JsError> {
    Ok(Manifest::from_json(manifest.as_bytes(), "manifest")
        .map_err(js_error)?
        .weights_file()
        .to_string())
}

/// Recommends items for a browsing history entirely in the page: one forward pass of the
/// model, then distances to the item representations of the blob.
#[wasm_bindgen]
pub struct Recommender {
    inner: Rc<Inner>,
    scorers: Rc<Scorers>,
}

#[wasm_bindgen]
impl Recommender {
    /// Builds a recommender from already-fetched files (tests, custom loaders): `items` is the
    /// blob's items parts, concatenated in order. The blob must have been built from exactly
    /// these model files.
    #[wasm_bindgen(js_name = fromBytes)]
    #[allow(clippy::too_many_arguments)]
    pub fn from_bytes(
        config: &[u8],
        weights: &[u8],
        tokenizer: &[u8],
        meta: &[u8],
        blob: &[u8],
        items: &[u8],
        manifest: Option<String>,
    ) -> Result<Recommender, JsError> {
        console_error_panic_hook::set_once();
        let files = ModelFiles {
            config: config.to_vec(),
            weights: weights.to_vec(),
            tokenizer: tokenizer.to_vec(),
            meta: meta.to_vec(),
        };
        let manifest = manifest
            .map(|text| Manifest::from_json(text.as_bytes(), "manifest"))
            .transpose()
            .map_err(js_error)?;
        let parsed = Blob::from_bytes(blob)
            .and_then(|b| b.with_items([("items", items)]))
            .map_err(js_error)?;
        match manifest {
            Some(m) => Self::build(&files, parsed, Some(m.weights_file()), m.scoring),
            None => Self::build(&files, parsed, None, Scoring::default()),
        }
    }

    /// The recommender of a blob read with its items parts; `weights_file` names the weights
    /// file `files` came from when a manifest said.
    fn build(
        files: &ModelFiles,
        blob: Blob,
        weights_file: Option<&'static str>,
        scoring: Scoring,
    ) -> Result<Recommender, JsError> {
        let mut model = Model::from_files(files).map_err(js_error)?;
        // The manifest's weights: the query states its scoring was chosen and evaluated with.
        model.net.set_weights(scoring.weights).map_err(js_error)?;
        let (catalog, mut reps) = load_blob(&model, blob, "blob").map_err(js_error)?;
        reps.apply_scoring(&scoring).map_err(js_error)?;
        Ok(Recommender {
            inner: Rc::new(Inner {
                model,
                catalog,
                reps,
                scoring,
                weights_file,
                trie: RefCell::new(None),
                encoder: RefCell::new(QueryEncoder::new()),
            }),
            scorers: Rc::new(Scorers::new()),
        })
    }

    /// Fetches the manifest, then the model files, the blob and every items part, one after the
    /// other in the manifest's order whatever the page will show (from the Cache API when
    /// present), verifies each file's sha256 against the manifest before use, caches verified
    /// files, and builds the recommender.
    #[wasm_bindgen(unchecked_return_type = "Promise<Recommender>")]
    pub async fn load(
        #[wasm_bindgen(unchecked_param_type = "LoadOptions")] options: JsValue,
    ) -> Result<Recommender, JsError> {
        console_error_panic_hook::set_once();
        let get =
            |name: &str| js_sys::Reflect::get(&options, &name.into()).unwrap_or(JsValue::UNDEFINED);
        let manifest_url = get("manifestUrl")
            .as_string()
            .ok_or_else(|| JsError::new("load: option `manifestUrl` (a string) is required"))?;
        let on_progress = get("onProgress");
        let cache_name = match get("cacheName") {
            v if v.is_undefined() => JsValue::from_str("l2d-v1"),
            v => v,
        };
        let which_blob = get("blob").as_string().unwrap_or_else(|| "memory".into());
        let manifest_bytes = fetch_bytes(
            &manifest_url,
            "manifest.json",
            JsValue::NULL,
            JsValue::UNDEFINED,
            0.0,
        )
        .await
        .map_err(js_value_error)?;
        let manifest_bytes = bytes_field(&manifest_bytes)?.to_vec();
        let manifest = Manifest::from_json(&manifest_bytes, &manifest_url).map_err(js_error)?;
        let blob_name = manifest
            .blob_file(&which_blob, &manifest_url)
            .map_err(js_error)?
            .to_string();
        let base = web_sys_url(&manifest_url)?;
        let mut fetched = BTreeMap::new();
        for name in manifest
            .fetched_files(&which_blob, &manifest_url)
            .map_err(js_error)?
        {
            let entry = manifest.file(name, &manifest_url).map_err(js_error)?;
            let url = resolve_url(&base, entry.url(name))?;
            fetched.insert(
                name.to_string(),
                fetch_verified(&url, name, entry, &cache_name, &on_progress).await?,
            );
        }
        let items_bytes = manifest
            .items
            .iter()
            .map(|name| fetched.get(name).map_or(0, |part| part.length() as usize))
            .sum();
        let mut take = |name: &str| {
            fetched
                .remove(name)
                .unwrap_or_else(|| js_sys::Uint8Array::new_with_length(0))
        };
        let files = ModelFiles {
            config: take(crate::model::CONFIG_FILE).to_vec(),
            weights: take(manifest.weights_file()).to_vec(),
            tokenizer: take(crate::model::TOKENIZER_FILE).to_vec(),
            meta: take(crate::model::META_FILE).to_vec(),
        };
        // Wasm memory never shrinks, so what is alive together sets its size for good: the
        // downloads stay outside it, only parsed rows and texts enter, the parts one at a time.
        let mut blob = Blob::from_source(&JsBytes(take(&blob_name))).map_err(js_error)?;
        let mut reader = ItemsReader::new(blob.counts.len(), items_bytes);
        for name in &manifest.items {
            reader.part(name, &take(name).to_vec()).map_err(js_error)?;
        }
        blob.items = reader.finish(&blob.items_sha256).map_err(js_error)?;
        // Files of an older deployment (other content-hashed names) leave the cache.
        let keep = js_sys::Array::new();
        for (name, entry) in &manifest.files {
            keep.push(&JsValue::from_str(&resolve_url(&base, entry.url(name))?));
        }
        cache_prune(cache_name.clone(), &resolve_url(&base, "./")?, keep).await;
        Self::build(
            &files,
            blob,
            Some(manifest.weights_file()),
            manifest.scoring,
        )
    }

    /// Recommends for `history` (item ids or exact titles, oldest first). Resolves to a
    /// `RecommendResult`.
    #[wasm_bindgen(unchecked_return_type = "Promise<RecommendResult>")]
    pub fn recommend(
        &self,
        #[wasm_bindgen(unchecked_param_type = "(string | number)[]")] history: JsValue,
        #[wasm_bindgen(unchecked_param_type = "RecommendOptions | undefined")] options: JsValue,
    ) -> Result<js_sys::Promise, JsError> {
        let inner = self.inner.clone();
        let scorers = self.scorers.clone();
        let (history, unknown) = resolve(&inner.catalog, history)?;
        let options: RecommendOptions = if options.is_undefined() || options.is_null() {
            RecommendOptions {
                k: None,
                mode: None,
                m: None,
                exclude_history: None,
                backend: None,
            }
        } else {
            serde_wasm_bindgen::from_value(options)
                .map_err(|e| JsError::new(&format!("recommend options: {e}")))?
        };
        let n_items = inner.catalog.len();
        let k = count_option("k", options.k, 10, n_items)?;
        let m = count_option("m", options.m, inner.scoring.m, usize::MAX)?;
        // The manifest decides the default; a global-only blob can only serve global mode.
        let default_mode = match inner.scoring.mode() {
            Ok(mode) if mode.uses_states() && inner.reps.local.is_some() => {
                inner.scoring.mode.name()
            }
            _ => "global",
        };
        let mode =
            Mode::parse(options.mode.as_deref().unwrap_or(default_mode), m).map_err(js_error)?;
        if mode.uses_states() && inner.reps.local.is_none() {
            return Err(JsError::new("local and density modes need a memory blob; this recommender was loaded with global vectors only"));
        }
        let backend: Backend = match options.backend.as_deref() {
            Some(name) => name.parse().map_err(js_error)?,
            None => Backend::Auto,
        };
        let exclude = if options.exclude_history.unwrap_or(true) {
            history.clone()
        } else {
            Vec::new()
        };
        Ok(wasm_bindgen_futures::future_to_promise(async move {
            recommend_async(inner, scorers, history, unknown, exclude, k, mode, backend)
                .await
                .map_err(JsValue::from)
        }))
    }

    /// The language-space baseline: constrained beam search with `beam` beams; its finished
    /// titles (best first) are the ranking. Synchronous and slow by design (for comparison).
    pub fn beam(
        &self,
        #[wasm_bindgen(unchecked_param_type = "(string | number)[]")] history: JsValue,
        beam: f64,
        k: f64,
    ) -> Result<JsValue, JsError> {
        let (history, _) = resolve(&self.inner.catalog, history)?;
        let beam = count_option("beam", Some(beam), 1, 64)?.max(1);
        let k = count_option("k", Some(k), 10, self.inner.catalog.len())?;
        let start = now();
        let trie = self.trie()?;
        let ids = self
            .inner
            .model
            .history_prompt_ids(&self.inner.catalog, &history)
            .map_err(js_error)?;
        let finished = beam_search(&self.inner.model, &trie, &ids, beam, MAX_TITLE_TOKENS)
            .map_err(js_error)?;
        // The distance shown for a beam result is its title's negative log-probability.
        let items: Vec<RecommendedItem> = ranking(&finished)
            .into_iter()
            .take(k)
            .map(|(i, log_prob)| item_out(&self.inner.catalog, i, -log_prob))
            .collect();
        let out = serde_json::json!({ "items": items, "ms": now() - start, "beam": beam });
        to_js(&out)
    }

    /// The catalog: `[{id, title, count}]` (count = memory states; 0 = cold-start item).
    /// Built item by item as JavaScript objects: no catalog-sized copy in wasm memory (an
    /// intermediate list of a million items would grow it by hundreds of megabytes, and it never
    /// shrinks).
    pub fn items(&self) -> Result<JsValue, JsError> {
        let out = js_sys::Array::new_with_length(self.inner.catalog.len() as u32);
        for (index, (item, &count)) in self
            .inner
            .catalog
            .items()
            .zip(&self.inner.reps.counts)
            .enumerate()
        {
            let object = js_sys::Object::new();
            for (key, value) in [
                ("id", JsValue::from_str(item.id)),
                ("title", JsValue::from_str(item.title)),
                ("count", JsValue::from_f64(f64::from(count))),
            ] {
                js_sys::Reflect::set(&object, &key.into(), &value).map_err(js_value_error)?;
            }
            out.set(index as u32, object.into());
        }
        Ok(out.into())
    }

    /// The L2D representation (last-token hidden state) of a history.
    pub fn hidden(
        &self,
        #[wasm_bindgen(unchecked_param_type = "(string | number)[]")] history: JsValue,
    ) -> Result<Vec<f32>, JsError> {
        let (history, _) = resolve(&self.inner.catalog, history)?;
        query_state(&self.inner.model, &self.inner.catalog, &history).map_err(js_error)
    }

    /// Sizes and identity: `{items, dim, coldItems, coldWithVectors, memoryStates, follows, followPairs, modelFingerprint, weightsFile, …}`
    /// (`weightsFile`: the weights file the manifest named, null without a manifest).
    pub fn info(&self) -> Result<JsValue, JsError> {
        let reps = &self.inner.reps;
        to_js(&serde_json::json!({
            "items": reps.n_items(),
            "dim": self.inner.model.hidden_size(),
            "coldItems": reps.cold_items(),
            "coldWithVectors": reps.cold_filled.len(),
            "memoryStates": reps.local.as_ref().map(|l| l.states().rows()),
            "modelFingerprint": self.inner.model.fingerprint.iter().map(|b| format!("{b:02x}")).collect::<String>(),
            "popularityPrior": reps.options.popularity_prior,
            "density": self.inner.scoring.density,
            "defaultMode": self.inner.scoring.mode,
            "localMinStates": self.inner.scoring.local_min_states,
            "follows": reps.options.follows,
            "followPairs": reps.follows.as_ref().map(|f| f.pairs()),
            "defaultM": self.inner.scoring.m,
            "weightsFile": self.inner.weights_file,
            "wasmMemoryBytes": wasm_memory_bytes(),
            // Which build runs: the worker loads the relaxed-SIMD one where the browser has it.
            "simd": if cfg!(target_feature = "relaxed-simd") { "relaxed" } else { "simd128" },
        }))
    }
}

impl Recommender {
    fn trie(&self) -> Result<Rc<TitleTrie>, JsError> {
        if let Some(t) = self.inner.trie.borrow().as_ref() {
            return Ok(t.clone());
        }
        let trie =
            Rc::new(TitleTrie::build(&self.inner.model, &self.inner.catalog).map_err(js_error)?);
        *self.inner.trie.borrow_mut() = Some(trie.clone());
        Ok(trie)
    }
}

fn to_js<T: Serialize>(value: &T) -> Result<JsValue, JsError> {
    value
        .serialize(&serde_wasm_bindgen::Serializer::json_compatible())
        .map_err(|e| JsError::new(&e.to_string()))
}

fn item_out(catalog: &Catalog, index: ItemIndex, distance: f32) -> RecommendedItem {
    let item = catalog.item(index);
    RecommendedItem {
        id: item.id.to_string(),
        title: item.title.to_string(),
        distance,
    }
}

/// History entries → known items (ids first, then exact titles) and the unknown ones.
fn resolve(catalog: &Catalog, history: JsValue) -> Result<(Vec<ItemIndex>, Vec<String>), JsError> {
    if history.is_undefined() || history.is_null() {
        return Ok((Vec::new(), Vec::new()));
    }
    let entries: Vec<HistoryEntry> = serde_wasm_bindgen::from_value(history).map_err(|e| {
        JsError::new(&format!(
            "history must be an array of item ids or titles: {e}"
        ))
    })?;
    let mut items = Vec::new();
    let mut unknown = Vec::new();
    for entry in entries {
        let text = match entry {
            HistoryEntry::Text(s) => s,
            HistoryEntry::Number(n) if n.is_finite() && n.fract() == 0.0 => format!("{n}"),
            HistoryEntry::Number(n) => {
                unknown.push(format!("{n}"));
                continue;
            }
        };
        match catalog.resolve(&text) {
            Some(i) => items.push(i),
            None => unknown.push(text),
        }
    }
    Ok((items, unknown))
}

#[allow(clippy::too_many_arguments)]
async fn recommend_async(
    inner: Rc<Inner>,
    scorers: Rc<Scorers>,
    history: Vec<ItemIndex>,
    unknown: Vec<String>,
    exclude: Vec<ItemIndex>,
    k: usize,
    mode: Mode,
    backend: Backend,
) -> Result<JsValue, JsError> {
    let start = now();
    let request = Request {
        history: &history,
        mode,
        k,
        exclude: &exclude,
    };
    let query = {
        let mut encoder = inner.encoder.borrow_mut();
        prepare_with(
            &inner.model,
            &inner.catalog,
            &inner.reps,
            &request,
            Some(&mut encoder),
        )
        .map_err(js_error)?
    };
    let encode_ms = now() - start;
    let history_used: Vec<String> = query
        .history
        .iter()
        .map(|&i| inner.catalog.item(i).id.to_string())
        .collect();
    let start = now();
    let ranked = scorers
        .rank(&inner.reps, &query, backend)
        .await
        .map_err(js_error)?;
    let items = ranked
        .items
        .into_iter()
        .map(|(i, d)| item_out(&inner.catalog, i, d))
        .collect();
    let score_ms = now() - start;
    to_js(&RecommendResult {
        items,
        encode_ms,
        score_ms,
        backend: ranked.backend,
        history_used,
        unknown,
    })
}

/// Size of this instance's linear memory (it only grows): what a soak watches.
fn wasm_memory_bytes() -> f64 {
    let memory: js_sys::WebAssembly::Memory = wasm_bindgen::memory().unchecked_into();
    js_sys::Reflect::get(&memory.buffer(), &"byteLength".into())
        .ok()
        .and_then(|v| v.as_f64())
        .unwrap_or(0.0)
}

fn bytes_field(result: &JsValue) -> Result<js_sys::Uint8Array, JsError> {
    let bytes = js_sys::Reflect::get(result, &"bytes".into()).map_err(js_value_error)?;
    Ok(js_sys::Uint8Array::new(&bytes))
}

/// A download kept in JavaScript memory, read into wasm range by range: a blob is hashed and
/// parsed without ever being copied whole into wasm memory.
struct JsBytes(js_sys::Uint8Array);

impl BlobSource for JsBytes {
    fn len(&self) -> usize {
        self.0.length() as usize
    }
    fn read_into(&self, offset: usize, out: &mut [u8]) {
        self.0
            .subarray(offset as u32, (offset + out.len()) as u32)
            .copy_to(out);
    }
}

fn web_sys_url(url: &str) -> Result<js_sys::JsString, JsError> {
    let base = js_sys::Reflect::get(&js_sys::global(), &"location".into())
        .ok()
        .and_then(|l| js_sys::Reflect::get(&l, &"href".into()).ok())
        .and_then(|h| h.as_string())
        .unwrap_or_default();
    resolve_url(&js_sys::JsString::from(base), url).map(js_sys::JsString::from)
}

fn resolve_url(base: &js_sys::JsString, relative: &str) -> Result<String, JsError> {
    let ctor = js_sys::Reflect::get(&js_sys::global(), &"URL".into()).map_err(js_value_error)?;
    let args = js_sys::Array::of2(&JsValue::from_str(relative), base);
    let url = js_sys::Reflect::construct(ctor.unchecked_ref::<js_sys::Function>(), &args)
        .map_err(|_| JsError::new(&format!("invalid URL {relative:?}")))?;
    Ok(js_sys::Reflect::get(&url, &"href".into())
        .map_err(js_value_error)?
        .as_string()
        .unwrap_or_default())
}

/// Fetches (or reads from cache) and checks sha256; a cached copy that fails the check is
/// evicted and downloaded again; a download that fails it is an error and is never cached.
async fn fetch_verified(
    url: &str,
    name: &str,
    entry: &crate::serve::manifest::FileEntry,
    cache_name: &JsValue,
    on_progress: &JsValue,
) -> Result<js_sys::Uint8Array, JsError> {
    let expected = entry.sha256.as_str();
    for attempt in 0..2 {
        // Progress counts the file's own bytes against the manifest's size: a server that
        // compresses (a CDN's gzip) sends a Content-Length of the compressed body.
        let result = fetch_bytes(
            url,
            name,
            cache_name.clone(),
            on_progress.clone(),
            entry.bytes as f64,
        )
        .await
        .map_err(js_value_error)?;
        let bytes = JsBytes(bytes_field(&result)?);
        let cached = js_sys::Reflect::get(&result, &"cached".into())
            .map(|v| v.is_truthy())
            .unwrap_or(false);
        let found = hex(&bytes.sha256(0..bytes.len()));
        if found == expected {
            if !cached {
                cache_put(url, cache_name.clone(), bytes.0.clone()).await;
            }
            return Ok(bytes.0);
        }
        if cached && attempt == 0 {
            cache_delete(url, cache_name.clone()).await;
            continue;
        }
        return Err(JsError::new(&format!(
            "{url}: sha256 mismatch (manifest {expected}, downloaded {found}, {} bytes): refusing to use it",
            bytes.len()
        )));
    }
    Err(JsError::new(&format!(
        "{url}: could not obtain a verified copy"
    )))
}
