// <l2d-recommendations manifest="../models/default/manifest.json" k="8"> (add mode="global", "local" or "density" to override the manifest's default scoring)
// Attributes: manifest (URL), k, mode (global|local|density; default: the manifest's scoring), model
// (auto: load the language model after the page's load event unless the visitor asks to save
// data; always: load it even then; never: the first tier only), debug (status shows the tier,
// timings and backend instead of the shopper-facing sentence).
// An embeddable storefront widget: keeps the visitor's browsing history in localStorage and
// never sends it anywhere. It answers in two tiers, in the same list:
//   tier 0, at once: the item-to-item follows ranking in plain JavaScript (l2d-follows.js) from
//     the small follows file and the items parts;
//   tier 1, once loaded: L2D with the language model, decoded in a Web Worker with the wasm
//     Recommender, downloaded after the page's `load` event at low fetch priority.
// Usable from a plain <script type="module"> without a build step.
//
// History API (also on window.l2d.history):
//   history.record(itemId)  add a viewed item (moved to the end if already there; capped)
//   history.clear()         forget everything
//   history.get()           the stored ids, oldest first
// Every change fires a "l2d-history-change" event on window; widgets refresh on it.
import { L2DClient } from "./l2d-client.js";
import { loadFollowsTier } from "./l2d-follows.js";

const STORAGE_KEY = "l2d-history";
export const HISTORY_CAP = 50;

function read() {
  try {
    const value = JSON.parse(localStorage.getItem(STORAGE_KEY) || "[]");
    return Array.isArray(value) ? value.filter((x) => typeof x === "string").slice(-HISTORY_CAP) : [];
  } catch (_) {
    return [];
  }
}

function write(ids) {
  try {
    localStorage.setItem(STORAGE_KEY, JSON.stringify(ids.slice(-HISTORY_CAP)));
  } catch (_) {
    // Storage full or disabled: the history simply is not remembered.
  }
  window.dispatchEvent(new CustomEvent("l2d-history-change"));
}

export const history = {
  record(itemId) {
    const id = String(itemId);
    write(read().filter((x) => x !== id).concat([id]));
  },
  clear() {
    write([]);
  },
  get() {
    return read();
  },
};

window.addEventListener("storage", (event) => {
  if (event.key === STORAGE_KEY) window.dispatchEvent(new CustomEvent("l2d-history-change"));
});

// One worker per page and manifest, shared by every widget on it (and by the page itself:
// `sharedClient(url).loaded.then(() => client.items())`). Its downloads go at low priority.
const clients = new Map();
export function sharedClient(manifestUrl, onProgress) {
  if (!clients.has(manifestUrl)) {
    const client = new L2DClient();
    const listeners = new Set();
    const loaded = client.load({ manifestUrl, priority: "low" }, (p) => listeners.forEach((f) => f(p)));
    loaded.then(() => performance.mark("l2d-model-ready"), () => {});
    clients.set(manifestUrl, { client, loaded, listeners });
  }
  const entry = clients.get(manifestUrl);
  if (onProgress) entry.listeners.add(onProgress);
  return entry;
}

// The first tier per manifest, shared likewise: `sharedFollows(url).then((t) => t.items)` lists
// the catalog ({id, title, count}) as soon as the follows file and the items parts arrive.
const firstTiers = new Map();
// Performance marks `l2d-tier0-ready` and `l2d-model-ready` time the tiers (scripts/bench-browser.mjs).
export function sharedFollows(manifestUrl) {
  if (!firstTiers.has(manifestUrl)) {
    firstTiers.set(
      manifestUrl,
      loadFollowsTier(manifestUrl).then((tier) => {
        performance.mark("l2d-tier0-ready");
        return tier;
      }),
    );
  }
  return firstTiers.get(manifestUrl);
}

// The visitor asked to save data (the Save-Data client hint or prefers-reduced-data).
export function savesData() {
  const connection = navigator.connection;
  if (connection && connection.saveData) return true;
  return typeof matchMedia === "function" && matchMedia("(prefers-reduced-data: reduce)").matches;
}

function afterLoad() {
  if (document.readyState === "complete") return Promise.resolve();
  return new Promise((resolve) => window.addEventListener("load", resolve, { once: true }));
}

const STYLE = `
  :host { display: block; font: inherit; border: 1px solid #ddd; border-radius: 6px; padding: 0.6rem 0.8rem; }
  h3 { margin: 0 0 0.4rem; font-size: 1rem; }
  ol { margin: 0.2rem 0 0.4rem; padding-left: 1.4rem; }
  .status { color: #666; font-size: 0.85em; }
  progress { width: 100%; }
  progress.done { visibility: hidden; }
  button { font-size: 0.8em; }
  [hidden] { display: none !important; }
`;

// The styles reach the shadow root as a constructed stylesheet (adoptedStyleSheets: Chromium 73+,
// Firefox 101+, Safari 16.4+), which a Content-Security-Policy of `style-src 'self'` allows. An
// engine without constructed stylesheets shows the widget unstyled: inline styles (an element
// or an attribute) would break a shop's strict CSP.
let sheet = null;
function adoptStyles(root) {
  if (!("adoptedStyleSheets" in Document.prototype) || typeof CSSStyleSheet.prototype.replaceSync !== "function") return false;
  if (!sheet) {
    sheet = new CSSStyleSheet();
    sheet.replaceSync(STYLE);
  }
  root.adoptedStyleSheets = [sheet];
  return true;
}

class L2DRecommendations extends HTMLElement {
  connectedCallback() {
    if (this.shadowRoot) return;
    const root = this.attachShadow({ mode: "open" });
    this.dataset.styled = String(adoptStyles(root));
    this.heading = document.createElement("h3");
    this.heading.textContent = this.getAttribute("heading") || "Recommended for you";
    this.status = document.createElement("div");
    this.status.className = "status";
    this.status.setAttribute("part", "status");
    // The bar keeps its place once done (hidden, not removed), so nothing below it moves.
    this.progress = document.createElement("progress");
    this.progress.max = 1;
    this.progress.value = 0;
    this.list = document.createElement("ol");
    this.list.setAttribute("part", "list");
    this.clearButton = document.createElement("button");
    this.clearButton.type = "button";
    this.clearButton.textContent = "Clear my history";
    this.clearButton.addEventListener("click", () => history.clear());
    const note = document.createElement("div");
    note.className = "status";
    note.textContent = "Computed in your browser; your history stays on this device.";
    root.append(this.heading, this.progress, this.status, this.list, this.clearButton, note);
    this.onChange = () => this.refresh();
    window.addEventListener("l2d-history-change", this.onChange);
    this.start();
  }

  disconnectedCallback() {
    window.removeEventListener("l2d-history-change", this.onChange);
  }

  get debug() {
    return this.hasAttribute("debug");
  }

  async start() {
    const manifest = new URL(this.getAttribute("manifest") || "../models/default/manifest.json", document.baseURI).href;
    this.setStatus("Loading recommendations…");
    this.dataset.state = "loading";
    const first = sharedFollows(manifest).then(
      (tier) => {
        this.firstTier = tier;
        if (!this.client) this.refresh();
      },
      (e) => {
        this.firstTierError = e;
        console.warn(`l2d: first tier: ${e.message}`);
      },
    );
    const policy = this.getAttribute("model") || "auto";
    if (policy === "never" || (policy === "auto" && savesData())) {
      this.progress.classList.add("done");
      this.dataset.model = policy === "never" ? "off" : "save-data";
      await first;
      if (!this.firstTier) this.fail(this.firstTierError);
      return;
    }
    // The model tier waits for the shop's own page to finish loading and for the first tier
    // (which then has the link to itself), then downloads at low priority in the worker.
    await Promise.all([afterLoad(), first]);
    const entry = sharedClient(manifest, (p) => {
      this.progress.value = p.total ? p.loaded / p.total : 0;
      if (!this.firstTier || this.debug) {
        this.setStatus(`${p.cached ? "Reading" : "Downloading"} ${p.file} (${(p.loaded / 1e6).toFixed(1)} MB)`);
      }
    });
    try {
      await entry.loaded;
      this.client = entry.client;
      this.progress.classList.add("done");
      this.dataset.state = "ready";
      this.refresh();
    } catch (e) {
      this.progress.classList.add("done");
      await first;
      this.fail(e);
    }
  }

  // The model tier failed: the first tier keeps answering where it loaded; otherwise a quiet
  // sentence (`debug` adds the reason: a missing file, a browser without WebAssembly SIMD, a
  // blob of another model, …) and the storefront keeps working without the widget's list.
  fail(e) {
    const reason = e && e.message ? e.message : String(e);
    this.dataset.state = "error";
    this.dataset.error = reason;
    console.warn(`l2d: ${reason}`);
    if (this.firstTier) {
      this.refresh();
      return;
    }
    this.list.replaceChildren();
    this.setStatus(this.debug ? `Recommendations are unavailable: ${reason}` : "Recommendations are unavailable right now.");
  }

  setStatus(text) {
    this.status.textContent = text;
  }

  show(items, tier, detail) {
    this.list.replaceChildren(
      ...items.map((item, rank) => {
        const li = document.createElement("li");
        li.textContent = item.title; // untrusted text, never HTML
        li.dataset.id = item.id;
        li.title = `#${rank + 1}`;
        return li;
      }),
    );
    this.dataset.items = items.map((i) => i.id).join(",");
    this.dataset.tier = String(tier);
    // Shoppers read a plain sentence; the tier, timings and the backend are diagnostics (`debug`).
    this.setStatus(this.debug ? detail : "Picked in this browser from what you viewed; your history stays on this device.");
  }

  async refresh() {
    if (!this.client && !this.firstTier) return;
    const ids = history.get();
    const turn = (this.turn = (this.turn || 0) + 1);
    if (ids.length === 0) {
      this.list.replaceChildren();
      this.setStatus("Browse a few products to get recommendations.");
      this.dataset.items = "";
      return;
    }
    const k = Number(this.getAttribute("k")) || 8;
    if (!this.client) {
      const start = performance.now();
      const items = this.firstTier.recommend(ids, k, true);
      const why = this.dataset.state === "error" ? `the model is unavailable: ${this.dataset.error}` : this.dataset.model ? `the model is off (${this.dataset.model})` : "the model is loading";
      this.show(items, 0, `tier 0 (follows + popularity) in ${(performance.now() - start).toFixed(1)} ms; ${why}`);
      return;
    }
    try {
      // Without a `mode` attribute the manifest's scoring decides (what `l2d eval --shipped` measures).
      const options = { k, excludeHistory: true };
      if (this.getAttribute("mode")) options.mode = this.getAttribute("mode");
      const result = await this.client.recommend(ids, options);
      if (turn !== this.turn) return;
      this.dataset.backend = result.backend.startsWith("webgpu") ? "webgpu" : result.backend;
      this.show(result.items, 1, `tier 1 (L2D): ${(result.encodeMs + result.scoreMs).toFixed(0)} ms on ${result.backend}`);
      this.dispatchEvent(new CustomEvent("l2d-recommendations", { detail: result }));
    } catch (e) {
      this.setStatus("Recommendations are unavailable right now.");
      console.warn(`l2d: ${e.message}`);
    }
  }
}

if (!customElements.get("l2d-recommendations")) {
  customElements.define("l2d-recommendations", L2DRecommendations);
}
window.l2d = Object.assign(window.l2d || {}, { history });
