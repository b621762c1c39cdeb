// Wasm memory after loading a deployed folder with `Recommender.fromBytes` (Node 20+, pkg/ from
// scripts/build-web.sh), with the weights file named on the command line, so the two weights
// files of a folder can be compared (wasm memory never shrinks: one process per file).
//   node scripts/wasm-load-memory.mjs [MODEL_DIR] WEIGHTS_FILE
import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import { pathToFileURL } from "node:url";

const args = process.argv.slice(2);
if (args.length < 1 || args.length > 2) throw new Error("usage: node scripts/wasm-load-memory.mjs [MODEL_DIR] WEIGHTS_FILE");
const [dir, weights] = args.length === 2 ? args : ["models/default", args[0]];
const pkg = resolve("pkg");
const file = (name) => readFileSync(`${resolve(dir)}/${name}`);
const manifest = file("manifest.json").toString();
const parsed = JSON.parse(manifest);
const items = Buffer.concat(parsed.items.map(file));
const mod = await import(pathToFileURL(`${pkg}/l2d.js`).href);
await mod.default({ module_or_path: readFileSync(`${pkg}/l2d_bg.wasm`) });
const start = performance.now();
const recommender = mod.Recommender.fromBytes(
  file("config.json"), file(weights), file("tokenizer.json"), file("l2d.json"),
  file(parsed.blobs.memory ?? parsed.blobs.global), items, manifest,
);
const ms = performance.now() - start;
console.log(`${dir} with ${weights}: wasm memory after load ${(recommender.info().wasmMemoryBytes / 1e6).toFixed(1)} MB, fromBytes ${ms.toFixed(0)} ms`);
