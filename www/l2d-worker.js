// The Web Worker that owns the wasm Recommender, so downloading, the forward pass and scoring
// never block the page. Protocol: {id, op, args} in; {id, ok, result | error} out, plus
// {type: "progress", file, loaded, total, cached} while loading.
import init, { Recommender } from "../pkg/l2d.js";
import { wasmBuild } from "./l2d-simd.js";

let recommender = null;
let ready = null;

async function load(options) {
  // {priority: "low"}: the downloads yield to the page's own (fetch priority hints).
  if (options && options.priority) globalThis.l2dFetchPriority = options.priority;
  await init({ module_or_path: new URL(`../pkg/${wasmBuild()}`, import.meta.url) });
  recommender = await Recommender.load({
    ...options,
    onProgress: (p) => postMessage({ type: "progress", ...p }),
  });
  return recommender.info();
}

const ops = {
  load: (args) => {
    ready = load(args[0]);
    return ready;
  },
  recommend: async (args) => (await need()).recommend(args[0], args[1]),
  beam: async (args) => (await need()).beam(args[0], args[1], args[2]),
  items: async () => (await need()).items(),
  info: async () => (await need()).info(),
  hasWebGPU: async () => {
    if (!("gpu" in navigator) || !navigator.gpu) return false;
    try {
      return (await navigator.gpu.requestAdapter()) !== null;
    } catch (_) {
      return false;
    }
  },
};

async function need() {
  if (!ready) throw new Error("l2d: call load() first");
  await ready;
  return recommender;
}

self.onmessage = async (event) => {
  const { id, op, args } = event.data || {};
  try {
    if (!ops[op]) throw new Error(`l2d worker: unknown operation ${op}`);
    const result = await ops[op](args || []);
    postMessage({ id, ok: true, result });
  } catch (e) {
    postMessage({ id, ok: false, error: e && e.message ? e.message : String(e) });
  }
};
