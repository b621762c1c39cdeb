// <l2d-recommendations manifest="../models/default/manifest.json" k="8"> (add mode="global", "local" or "density" to override the manifest's default scoring)
// Attributes: manifest (URL), k, mode (global|local|density; default: the manifest's scoring), debug (status shows
// timings and backend instead of the shopper-facing sentence).
// An embeddable storefront widget: keeps the visitor's browsing history in localStorage,
// decodes recommendations in a Web Worker with the wasm Recommender, and never sends the
// history anywhere. Usable from a plain <script type="module"> without a build step.
//
// History API (also on window.l2d.history):
//   history.record(itemId)  add a viewed item (moved to the end if already there; capped)
//   history.clear()         forget everything
//   history.get()           the stored ids, oldest first
// Every change fires a "l2d-history-change" event on window; widgets refresh on it.
import { L2DClient } from "./l2d-client.js";

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
// `sharedClient(url).loaded.then(() => client.items())`).
const clients = new Map();
export function sharedClient(manifestUrl, onProgress) {
  if (!clients.has(manifestUrl)) {
    const client = new L2DClient();
    const listeners = new Set();
    const loaded = client.load({ manifestUrl }, (p) => listeners.forEach((f) => f(p)));
    clients.set(manifestUrl, { client, loaded, listeners });
  }
  const entry = clients.get(manifestUrl);
  if (onProgress) entry.listeners.add(onProgress);
  return entry;
}

const STYLE = `
  :host { display: block; font: inherit; border: 1px solid #ddd; border-radius: 6px; padding: 0.6rem 0.8rem; }
  h3 { margin: 0 0 0.4rem; font-size: 1rem; }
  ol { margin: 0.2rem 0 0.4rem; padding-left: 1.4rem; }
  .status { color: #666; font-size: 0.85em; }
  progress { width: 100%; }
  button { font-size: 0.8em; }
  [hidden] { display: none !important; }
`;

// The styles reach the shadow root as a constructed stylesheet (adoptedStyleSheets: Chromium 73+,
// Firefox 101+, Safari 16.4+), which a Content-Security-Policy of `style-src 'self'` allows: an
// inline <style> element or a style= attribute it blocks. Only an engine without constructed
// stylesheets gets a <style> element (styled unless the page's CSP forbids inline styles).
let sheet = null;
function adoptStyles(root) {
  if ("adoptedStyleSheets" in Document.prototype && typeof CSSStyleSheet.prototype.replaceSync === "function") {
    if (!sheet) {
      sheet = new CSSStyleSheet();
      sheet.replaceSync(STYLE);
    }
    root.adoptedStyleSheets = [sheet];
    return [];
  }
  const style = document.createElement("style");
  style.textContent = STYLE;
  return [style];
}

class L2DRecommendations extends HTMLElement {
  connectedCallback() {
    if (this.shadowRoot) return;
    const root = this.attachShadow({ mode: "open" });
    const styles = adoptStyles(root);
    this.heading = document.createElement("h3");
    this.heading.textContent = this.getAttribute("heading") || "Recommended for you";
    this.status = document.createElement("div");
    this.status.className = "status";
    this.status.setAttribute("part", "status");
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
    root.append(...styles, this.heading, this.progress, this.status, this.list, this.clearButton, note);
    this.onChange = () => this.refresh();
    window.addEventListener("l2d-history-change", this.onChange);
    this.start();
  }

  disconnectedCallback() {
    window.removeEventListener("l2d-history-change", this.onChange);
  }

  async start() {
    const manifest = new URL(this.getAttribute("manifest") || "../models/default/manifest.json", document.baseURI).href;
    this.setStatus("Loading recommendations…");
    const entry = sharedClient(manifest, (p) => {
      this.progress.value = p.total ? p.loaded / p.total : 0;
      this.setStatus(`${p.cached ? "Reading" : "Downloading"} ${p.file} (${(p.loaded / 1e6).toFixed(1)} MB)`);
    });
    this.client = entry.client;
    try {
      await entry.loaded;
      this.progress.hidden = true;
      this.dataset.state = "ready";
      this.refresh();
    } catch (e) {
      // A quiet fallback: the storefront keeps working without the widget's list.
      this.progress.hidden = true;
      this.list.replaceChildren();
      this.dataset.state = "error";
      // Shoppers read a plain sentence; `debug` adds the reason (a missing file, a browser
      // without WebAssembly SIMD, a blob of another model, …).
      this.setStatus(
        this.hasAttribute("debug")
          ? `Recommendations are unavailable: ${e.message}`
          : "Recommendations are unavailable right now.",
      );
      this.dataset.error = e.message;
      console.warn(`l2d: ${e.message}`);
    }
  }

  setStatus(text) {
    this.status.textContent = text;
  }

  async refresh() {
    if (!this.client || this.dataset.state === "error") return;
    const ids = history.get();
    const turn = (this.turn = (this.turn || 0) + 1);
    if (ids.length === 0) {
      this.list.replaceChildren();
      this.setStatus("Browse a few products to get recommendations.");
      this.dataset.items = "";
      return;
    }
    try {
      const k = Number(this.getAttribute("k")) || 8;
      // Without a `mode` attribute the manifest's scoring decides (what `l2d eval --shipped` measures).
      const options = { k, excludeHistory: true };
      if (this.getAttribute("mode")) options.mode = this.getAttribute("mode");
      const result = await this.client.recommend(ids, options);
      if (turn !== this.turn) return;
      this.list.replaceChildren(
        ...result.items.map((item, rank) => {
          const li = document.createElement("li");
          li.textContent = item.title; // untrusted text, never HTML
          li.dataset.id = item.id;
          li.title = `#${rank + 1}`;
          return li;
        }),
      );
      this.dataset.items = result.items.map((i) => i.id).join(",");
      // Shoppers read a plain sentence; timings and the backend are diagnostics (`debug`).
      this.dataset.backend = result.backend.startsWith("webgpu") ? "webgpu" : result.backend;
      this.setStatus(
        this.hasAttribute("debug")
          ? `${(result.encodeMs + result.scoreMs).toFixed(0)} ms on ${result.backend}`
          : "Picked in this browser from what you viewed; your history stays on this device.",
      );
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
