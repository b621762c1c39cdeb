// Promise-based client for the l2d worker; what pages use.
//   const l2d = new L2DClient();
//   await l2d.load({ manifestUrl: "../models/default/manifest.json" }, (p) => ...);
//   const { items, encodeMs, scoreMs, backend } = await l2d.recommend(["260", "1196"], { k: 8 });
export class L2DClient {
  constructor(workerUrl = new URL("./l2d-worker.js", import.meta.url)) {
    this.worker = new Worker(workerUrl, { type: "module" });
    this.pending = new Map();
    this.nextId = 1;
    this.onProgress = null;
    this.worker.onmessage = (event) => {
      const msg = event.data;
      if (msg && msg.type === "progress") {
        if (this.onProgress) this.onProgress(msg);
        return;
      }
      const entry = this.pending.get(msg.id);
      if (!entry) return;
      this.pending.delete(msg.id);
      if (msg.ok) entry.resolve(msg.result);
      else entry.reject(new Error(msg.error));
    };
    this.worker.onerror = (event) => {
      const error = new Error(`l2d worker failed: ${event.message || "could not start"}`);
      for (const entry of this.pending.values()) entry.reject(error);
      this.pending.clear();
    };
  }

  call(op, ...args) {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.worker.postMessage({ id, op, args });
    });
  }

  /** Loads model + blob (manifestUrl, cacheName, blob); onProgress({file, loaded, total, cached}). */
  load(options, onProgress) {
    this.onProgress = onProgress || null;
    return this.call("load", options);
  }
  /** L2D recommendations: history = item ids or titles; options {k, mode, m, excludeHistory, backend}. */
  recommend(history, options) {
    return this.call("recommend", history, options);
  }
  /** The beam-search baseline (beam 1/5/10). */
  beam(history, beam, k) {
    return this.call("beam", history, beam, k);
  }
  items() {
    return this.call("items");
  }
  info() {
    return this.call("info");
  }
  hasWebGPU() {
    return this.call("hasWebGPU");
  }
  terminate() {
    this.worker.terminate();
  }
}
