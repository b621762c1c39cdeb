// Runs www/bench.html in headless Chromium twice in one profile (cold, then warm from the Cache
// API) and prints both reports, each with the bytes the visit downloaded (the server gzips as a
// CDN does; bytes on the wire, headers included, by file); with --soak N, one run of N recommendations over random
// histories instead (wasm memory and p99 drift); with --catalog N,N,…, a catalog-size sweep on
// synthetic L2D-G catalogs (int8, `l2d synth` with the shipped model, written to
// target/synth/cN/ unless there); with --model DIR (a deployed folder inside the repository,
// default models/default), that folder's manifest. Needs pkg/ (scripts/build-web.sh), `npm install`, and for
// --catalog the release binary (cargo build --release).
//   node scripts/bench-browser.mjs [--model DIR] [--soak 10000 | --catalog 10000,100000,1000000]
import { chromium } from "playwright-core";
import { spawn, execFileSync } from "node:child_process";
import { existsSync, mkdirSync, linkSync, copyFileSync } from "node:fs";

const ROOT = new URL("..", import.meta.url).pathname;
const arg = (name) => (process.argv.includes(name) ? process.argv[process.argv.indexOf(name) + 1] : null);
const catalog = arg("--catalog");
for (const size of catalog ? catalog.split(",") : []) {
  const dir = `${ROOT}target/synth/c${size}`;
  if (existsSync(`${dir}/manifest.json`)) continue;
  mkdirSync(dir, { recursive: true });
  for (const f of ["config.json", "model.safetensors", "tokenizer.json", "l2d.json", "train.json"]) {
    if (existsSync(`${dir}/${f}`)) continue;
    try {
      linkSync(`${ROOT}models/default/${f}`, `${dir}/${f}`);
    } catch (_) {
      copyFileSync(`${ROOT}models/default/${f}`, `${dir}/${f}`);
    }
  }
  const l2d = `${ROOT}target/release/l2d`;
  execFileSync(l2d, ["synth", "--items", size, "--dtype", "i8", "--out", `${dir}/global.blob`], { stdio: "inherit" });
  execFileSync(l2d, ["manifest", "--model", dir, "--mode", "global"], { stdio: "inherit" });
}
const port = 19080 + Math.floor(Math.random() * 500);
const modelDir = (arg("--model") ?? "models/default").replace(/\/+$/, "");
if (modelDir.includes("..") || modelDir.startsWith("/")) throw new Error(`--model ${modelDir}: a directory inside the repository`);
const also = [...(catalog ? ["--also", "target/synth/"] : []), ...(modelDir !== "models/default" ? ["--also", `${modelDir}/`] : [])];
const server = spawn("python3", [`${ROOT}scripts/serve.py`, "--port", String(port), "--quiet", "--gzip", ...also], { stdio: ["ignore", "pipe", "inherit"] });
await new Promise((resolve) => server.stdout.once("data", resolve));
const browser = await chromium.launch({
  executablePath: "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run", "--enable-unsafe-webgpu"],
});
const context = await browser.newContext();
const page = await context.newPage();
const soak = Number(arg("--soak") ?? 0);
const modelQuery = modelDir === "models/default" ? "" : `manifest=${encodeURIComponent(`../${modelDir}/manifest.json`)}`;
const query = catalog ? `?catalog=${catalog}` : soak ? `?soak=${soak}${modelQuery ? `&${modelQuery}` : ""}` : modelQuery ? `?${modelQuery}` : "";
// Bytes on the wire per file name (the worker's requests included), for the current visit.
let wire = new Map();
const pending = [];
page.on("requestfinished", (request) => {
  pending.push(
    request.sizes().then((s) => {
      const name = new URL(request.url()).pathname.split("/").pop();
      wire.set(name, (wire.get(name) ?? 0) + s.responseBodySize + s.responseHeadersSize);
    }),
  );
});
const MODEL_FILES = ["config.json", "model.safetensors", "model.int8.safetensors", "tokenizer.json", "l2d.json", "memory.blob", "global.blob"];
const isModelFile = (name) => MODEL_FILES.includes(name) || /^items-.*\.jsonl$/.test(name);
for (const visit of catalog ? ["catalog"] : soak ? ["soak"] : ["cold", "warm"]) {
  wire = new Map();
  await page.goto(`http://127.0.0.1:${port}/www/bench.html${query}`);
  await page.waitForSelector("body[data-done]", { timeout: 1800000 });
  await Promise.all(pending.splice(0));
  console.log(`${visit} visit:`, await page.textContent("#out"));
  const total = [...wire.values()].reduce((a, b) => a + b, 0);
  const model = [...wire].reduce((a, [f, n]) => a + (isModelFile(f) ? n : 0), 0);
  const files = Object.fromEntries([...wire].sort((a, b) => b[1] - a[1]).slice(0, 8));
  console.log(`${visit} visit downloaded (gzip as served): ${(total / 1e6).toFixed(2)} MB in all, model + tokenizer + blob + items parts ${(model / 1e6).toFixed(2)} MB; largest:`, JSON.stringify(files));
}
await browser.close();
server.kill();
