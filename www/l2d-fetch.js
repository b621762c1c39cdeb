// I/O edge of the wasm Recommender (imported by src/web.rs through wasm-bindgen): fetch with
// byte-level progress, and the Cache API. Integrity checks (sha256) happen in Rust before
// anything is cached, so a bad or partial download never enters the cache.

function cachesOrNull() {
  try {
    return typeof caches === "undefined" ? null : caches;
  } catch (_) {
    return null;
  }
}

// Returns {bytes: Uint8Array, cached: boolean}. Reports {file, loaded, total, cached} to onProgress;
// total is expectedBytes (the manifest's size of the file) when given, since a server that
// compresses (Content-Encoding: gzip) sends the compressed size as Content-Length while the
// body stream yields the file's own bytes.
export async function fetchBytes(url, file, cacheName, onProgress, expectedBytes = 0) {
  const store = cacheName ? cachesOrNull() : null;
  if (store) {
    try {
      const cache = await store.open(cacheName);
      const hit = await cache.match(url);
      if (hit) {
        const bytes = new Uint8Array(await hit.arrayBuffer());
        if (onProgress) onProgress({ file, loaded: bytes.length, total: bytes.length, cached: true });
        return { bytes, cached: true };
      }
    } catch (_) {
      // A broken cache is treated as empty.
    }
  }
  let response;
  try {
    // A worker that loads in the background sets globalThis.l2dFetchPriority = "low" (l2d-worker.js).
    response = await fetch(url, { credentials: "omit", priority: globalThis.l2dFetchPriority || "auto" });
  } catch (e) {
    throw new Error(`GET ${url}: network error (${e && e.message ? e.message : e})`);
  }
  if (!response.ok) {
    throw new Error(`GET ${url}: HTTP ${response.status} ${response.statusText}`);
  }
  const header = Number(response.headers.get("content-length"));
  const total = expectedBytes > 0 ? expectedBytes : Number.isFinite(header) && header > 0 ? header : 0;
  const chunks = [];
  let loaded = 0;
  if (response.body && response.body.getReader) {
    const reader = response.body.getReader();
    for (;;) {
      let step;
      try {
        step = await reader.read();
      } catch (e) {
        throw new Error(`GET ${url}: download interrupted after ${loaded} bytes (${e && e.message ? e.message : e})`);
      }
      if (step.done) break;
      chunks.push(step.value);
      loaded += step.value.length;
      if (onProgress) onProgress({ file, loaded, total, cached: false });
    }
  } else {
    const whole = new Uint8Array(await response.arrayBuffer());
    chunks.push(whole);
    loaded = whole.length;
    if (onProgress) onProgress({ file, loaded, total, cached: false });
  }
  const bytes = new Uint8Array(loaded);
  let offset = 0;
  for (const c of chunks) {
    bytes.set(c, offset);
    offset += c.length;
  }
  return { bytes, cached: false };
}

// Stores verified bytes; a full quota is reported (false), not thrown: the app still works.
export async function cachePut(url, cacheName, bytes) {
  const store = cachesOrNull();
  if (!store || !cacheName) return false;
  try {
    const cache = await store.open(cacheName);
    await cache.put(url, new Response(bytes, { headers: { "content-length": String(bytes.length) } }));
    return true;
  } catch (e) {
    console.warn(`l2d: could not cache ${url}: ${e && e.message ? e.message : e}`);
    return false;
  }
}

export async function cacheDelete(url, cacheName) {
  const store = cachesOrNull();
  if (!store || !cacheName) return;
  try {
    const cache = await store.open(cacheName);
    await cache.delete(url);
  } catch (_) {}
}

// Deletes the cached entries under `prefix` (the manifest's directory) that are not in `keep`
// (the URLs of every file the current manifest lists): the files of an older deployment whose
// content-hashed names the new manifest no longer names.
export async function cachePrune(cacheName, prefix, keep) {
  const store = cachesOrNull();
  if (!store || !cacheName) return 0;
  let removed = 0;
  try {
    const cache = await store.open(cacheName);
    const wanted = new Set(keep);
    for (const request of await cache.keys()) {
      if (request.url.startsWith(prefix) && !wanted.has(request.url)) {
        if (await cache.delete(request)) removed += 1;
      }
    }
  } catch (_) {}
  return removed;
}

export function now() {
  return typeof performance !== "undefined" ? performance.now() : Date.now();
}
