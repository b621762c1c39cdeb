// The widget's first tier: recommendations without a model, in plain JavaScript, from the
// deployed folder's follows file (follow weights and popularity, `follows.bin`) and its items
// parts (ids and titles) — the item-to-item baseline that `l2d eval --methods follows` ranks
// (`Follows::ranking` in src/latent/follows.rs; the file's layout is in its `FollowsFile`). The
// rule's constants (window, decay, levels per nat) come from the file, not from this code.
// `tests/follows.mjs` checks the ranking against the Rust one on the parity fixture.
import { cacheDelete, cachePut, fetchBytes } from "./l2d-fetch.js";

const MAGIC = "L2DFOLW\0";
const HEADER = 64;

function hex(bytes) {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

function leb128(bytes, at, what) {
  let value = 0;
  let scale = 1;
  for (;;) {
    if (at.i >= bytes.length) throw new Error(`follows.bin: truncated ${what} at byte ${at.i}`);
    const byte = bytes[at.i++];
    value += (byte & 0x7f) * scale;
    if ((byte & 0x80) === 0) return value;
    scale *= 128;
    if (scale > 2 ** 49) throw new Error(`follows.bin: ${what} too large at byte ${at.i}`);
  }
}

/** Parses a follows file: {items, window, decay, weightOf, popularity, offsets, targets, levels, itemsSha256}. */
export function parseFollows(bytes) {
  if (bytes.length < HEADER) throw new Error(`follows.bin: ${bytes.length} bytes, expected at least ${HEADER}`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const magic = String.fromCharCode(...bytes.subarray(0, 8));
  if (magic !== MAGIC) throw new Error(`follows.bin: magic ${JSON.stringify(magic)}, expected "L2DFOLW\\0"`);
  const version = view.getUint32(8, true);
  if (version !== 1) throw new Error(`follows.bin: version ${version}, expected 1`);
  const items = view.getUint32(12, true);
  const window = view.getUint32(16, true);
  const decay = view.getFloat32(20, true);
  const levelsPerNat = view.getFloat32(24, true);
  const itemsSha256 = hex(bytes.subarray(28, 60));
  const popularityBytes = view.getUint32(60, true);
  if (HEADER + popularityBytes > bytes.length) {
    throw new Error(`follows.bin: popularity length ${popularityBytes}, past the file's ${bytes.length} bytes`);
  }
  const popularity = new Uint32Array(items);
  const at = { i: HEADER };
  for (let item = 0; item < items; item++) popularity[item] = leb128(bytes, at, `popularity of item ${item}`);
  if (at.i !== HEADER + popularityBytes) throw new Error(`follows.bin: popularity counts end at byte ${at.i}, expected ${HEADER + popularityBytes}`);
  // The pairs, decoded in one pass into arrays sized for the most pairs the bytes can hold
  // (each takes at least two bytes): no long task on the page's thread for a large file.
  const offsets = new Uint32Array(items + 1);
  const capacity = Math.max(0, (bytes.length - at.i) >> 1);
  const targets = new Uint32Array(capacity);
  const levels = new Uint8Array(capacity);
  let pairs = 0;
  let i = at.i;
  const end = bytes.length;
  for (let item = 0; item < items; item++) {
    let count = 0;
    for (let scale = 1; ; scale *= 128) {
      if (i >= end) throw new Error(`follows.bin: truncated pair count of item ${item} at byte ${i}`);
      const byte = bytes[i++];
      count += (byte & 0x7f) * scale;
      if (byte < 0x80) break;
    }
    let target = 0;
    for (let p = 0; p < count; p++) {
      for (let scale = 1; ; scale *= 128) {
        if (i >= end) throw new Error(`follows.bin: truncated target gap of item ${item} at byte ${i}`);
        const byte = bytes[i++];
        target += (byte & 0x7f) * scale;
        if (byte < 0x80) break;
      }
      if (target >= items) throw new Error(`follows.bin: item ${item} has target ${target}, past the catalog's ${items} items`);
      if (i >= end || pairs >= capacity) throw new Error(`follows.bin: truncated weight level of item ${item}`);
      targets[pairs] = target;
      levels[pairs++] = bytes[i++];
    }
    offsets[item + 1] = pairs;
  }
  at.i = i;
  if (at.i !== bytes.length) throw new Error(`follows.bin: ${bytes.length - at.i} bytes after the last item`);
  // The weight of each level, computed in f64 and rounded to f32 once, as the Rust build does.
  const weightOf = new Float32Array(256);
  for (let level = 0; level < 256; level++) weightOf[level] = Math.expm1(level / levelsPerNat);
  return {
    items,
    window,
    decay,
    weightOf,
    popularity,
    offsets,
    targets: targets.subarray(0, pairs),
    levels: levels.subarray(0, pairs),
    itemsSha256,
  };
}

/**
 * The first `k` items (catalog indices) for `history` (indices, oldest first), leaving out
 * `exclude`: items by ln(1 + Σ decay^place · weight) over the last `window` history items, then
 * by popularity, then by index; popular items fill the rest. f32 arithmetic as in Rust.
 */
export function rankFollows(file, history, k, exclude = []) {
  const f32 = Math.fround;
  const depth = k + exclude.length;
  const sums = new Map();
  let decay = 1;
  const windowed = history.slice(Math.max(0, history.length - file.window));
  for (let h = windowed.length - 1; h >= 0; h--) {
    const source = windowed[h];
    if (source < file.items) {
      for (let p = file.offsets[source]; p < file.offsets[source + 1]; p++) {
        const target = file.targets[p];
        sums.set(target, f32((sums.get(target) || 0) + f32(decay * file.weightOf[file.levels[p]])));
      }
    }
    decay = f32(decay * file.decay);
  }
  const pop = file.popularity;
  const followed = Array.from(sums, ([item, sum]) => [item, f32(Math.log1p(sum))]);
  followed.sort((a, b) => b[1] - a[1] || pop[b[0]] - pop[a[0]] || a[0] - b[0]);
  const ranking = followed.slice(0, depth).map(([item]) => item);
  if (ranking.length < depth) {
    const listed = new Set(ranking);
    for (const item of popularOrder(file)) {
      if (ranking.length >= depth) break;
      if (!listed.has(item)) ranking.push(item);
    }
  }
  const excluded = new Set(exclude);
  return ranking.filter((item) => !excluded.has(item)).slice(0, k);
}

// Items by popularity, then index (computed once per file).
function popularOrder(file) {
  if (!file.popular) {
    file.popular = Array.from({ length: file.items }, (_, i) => i);
    file.popular.sort((a, b) => file.popularity[b] - file.popularity[a] || a - b);
  }
  return file.popular;
}

/** Parses items parts (JSON lines {"id", "title"}, catalog order) into [{id, title}]. */
export function parseItems(parts) {
  const items = [];
  const decoder = new TextDecoder();
  parts.forEach((bytes, part) => {
    decoder
      .decode(bytes)
      .split("\n")
      .forEach((line, n) => {
        if (!line) return;
        let item;
        try {
          item = JSON.parse(line);
        } catch (e) {
          throw new Error(`items part ${part}, line ${n + 1}: not JSON (${e.message})`);
        }
        if (typeof item.id !== "string" || typeof item.title !== "string") {
          throw new Error(`items part ${part}, line ${n + 1}: expected {"id": string, "title": string}`);
        }
        items.push({ id: item.id, title: item.title });
      });
  });
  return items;
}

// Runs `work` and records how long it held the page's thread as a performance measure
// `l2d-task: what` (the page tests hold each under 50 ms, a long task's threshold).
export function timed(what, work) {
  const start = performance.now();
  try {
    return work();
  } finally {
    performance.measure(`l2d-task: ${what}`, { start, end: performance.now() });
  }
}

async function sha256Hex(bytes) {
  const subtle = globalThis.crypto && globalThis.crypto.subtle;
  return subtle ? hex(new Uint8Array(await subtle.digest("SHA-256", bytes))) : null;
}

// Fetches one file the manifest lists, checks its sha256 where the page can (a secure
// context), and caches a verified download in the Cache API the model tier reads.
// A cached copy that fails the check (an older deployment under the same name) is evicted and
// downloaded again, as the model tier does.
async function fetchListed(manifest, base, name, cacheName) {
  const entry = manifest.files && manifest.files[name];
  if (!entry) throw new Error(`manifest: ${name} is not listed in files`);
  const url = new URL(entry.path || name, base).href;
  for (let attempt = 0; ; attempt++) {
    const { bytes, cached } = await fetchBytes(url, name, cacheName, null, entry.bytes || 0);
    const found = await sha256Hex(bytes);
    if (found === null || found === entry.sha256) {
      if (found !== null && !cached) await cachePut(url, cacheName, bytes);
      return bytes;
    }
    if (cached && attempt === 0) {
      await cacheDelete(url, cacheName);
      continue;
    }
    throw new Error(`${url}: sha256 mismatch (manifest ${entry.sha256}, downloaded ${found}): refusing to use it`);
  }
}

/**
 * Loads the first tier of the folder whose manifest is at `manifestUrl`: {items: [{id, title,
 * count}], recommend(ids, k, excludeHistory)}. Rejects when the manifest names no follows file.
 */
export async function loadFollowsTier(manifestUrl, cacheName = "l2d-v1") {
  const response = await fetch(manifestUrl, { credentials: "omit" });
  if (!response.ok) throw new Error(`GET ${manifestUrl}: HTTP ${response.status} ${response.statusText}`);
  const manifest = await response.json();
  if (!manifest.follows) throw new Error(`${manifestUrl}: no follows file (rebuild with \`l2d manifest\`)`);
  const base = new URL("./", manifestUrl);
  // One after the other, in the manifest's order: the same requests in the same order whatever
  // the history (what the CDN sees must not depend on it).
  const followsBytes = await fetchListed(manifest, base, manifest.follows, cacheName);
  const parts = [];
  for (const name of manifest.items || []) parts.push(await fetchListed(manifest, base, name, cacheName));
  // Two short tasks on the page's thread rather than one long, each timed (`l2d-task` measures).
  const file = timed("parse follows.bin", () => parseFollows(followsBytes));
  await new Promise((resolve) => setTimeout(resolve));
  const items = timed("parse the items parts", () => parseItems(parts));
  if (items.length !== file.items) {
    throw new Error(`${manifestUrl}: the items parts hold ${items.length} items, the follows file ${file.items}`);
  }
  const index = new Map(items.map((item, i) => [item.id, i]));
  items.forEach((item, i) => (item.count = file.popularity[i]));
  return {
    items,
    recommend(ids, k, excludeHistory = true) {
      const history = ids.map((id) => index.get(String(id))).filter((i) => i !== undefined);
      const ranking = timed("rank", () => rankFollows(file, history, k, excludeHistory ? history : []));
      return ranking.map((i) => ({ id: items[i].id, title: items[i].title }));
    },
  };
}
