// Paired comparison of wasm builds in one page of headless Chromium (where the browser goals are
// measured) or, with --node, in one Node 20+ process: each build (a directory laid out as pkg/,
// from scripts/build-web.sh) loads the shipped model with `Recommender.fromBytes`, and every
// random history goes through all of them, the order alternating, so host drift (up to 30 %
// between runs minutes apart here) falls on every build alike. Reports per build the median of
// `hidden()` for a fresh 10-item history and of `recommend` (CPU) for a history that grew by one
// item (8 items, then the same 8 + 1: the encoder reuses the cache). Each build runs the module
// the worker would load in that engine (www/l2d-simd.js: the relaxed-SIMD one where it validates
// and the directory has it), named in the report. The same directory may be
// given twice (a separate instance each): the pair shows the noise floor. Chromium's clock in
// a page steps by 0.1 ms. Needs `npm install` (playwright-core) and Debian's chromium unless
// --node; --profile FILE writes the page's CPU profile (DevTools' .cpuprofile, wasm functions
// by name).
//   node scripts/bench-ab.mjs [--seconds 40] [--mode global] [--model models/default] [--node | --profile FILE] DIR_A DIR_B …
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { wasmBuild } from "../www/l2d-simd.js";
import { resolve } from "node:path";
import { pathToFileURL } from "node:url";

const args = process.argv.slice(2);
const options = { "--seconds": "40", "--mode": "global", "--model": "models/default", "--profile": "" };
let inNode = false;
const builds = [];
for (let i = 0; i < args.length; i++) {
  if (args[i] === "--node") {
    inNode = true;
  } else if (args[i] in options) {
    if (i + 1 >= args.length) throw new Error(`${args[i]} needs a value`);
    options[args[i]] = args[++i];
  } else {
    builds.push({ dir: resolve(args[i]), name: args[i] });
  }
}
const seconds = Number(options["--seconds"]);
if (!(seconds > 0)) throw new Error(`--seconds must be a positive number, got ${options["--seconds"]}`);
if (builds.length === 0) throw new Error("usage: node scripts/bench-ab.mjs [options] DIR_A DIR_B … (each a pkg/ build)");

const model = resolve(options["--model"]);
const file = (name) => readFileSync(`${model}/${name}`);
const manifest = file("manifest.json").toString();
// The memory blob when the manifest lists one (the default modes read it), else the global one.
const blobs = JSON.parse(manifest).blobs;
const names = ["config.json", "tokenizer.json", "l2d.json", blobs.memory ?? blobs.global, ...JSON.parse(manifest).items];

// The measurement, the same source in Node and in the page: `modules[i]` is build i's
// initialised l2d.js, `bytes(name)` a model file's bytes.
async function measure({ modules, bytes, manifest, seconds, mode, blob, itemParts }) {
  const concat = (parts) => {
    const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
    let at = 0;
    for (const p of parts) out.set(p, (at += p.length) - p.length);
    return out;
  };
  const items = concat(await Promise.all(itemParts.map(bytes)));
  const recommenders = [];
  for (const mod of modules) {
    recommenders.push(
      mod.Recommender.fromBytes(
        await bytes("config.json"), await bytes(mod.weightsFile(manifest)), await bytes("tokenizer.json"),
        await bytes("l2d.json"), await bytes(blob), items, manifest,
      ),
    );
  }
  const ids = new TextDecoder().decode(items).trim().split("\n").map((line) => JSON.parse(line).id);
  let seed = 7;
  const random = () => (seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648;
  const pick = () => ids[Math.floor(random() * ids.length)];
  const fresh = modules.map(() => []);
  const grown = modules.map(() => []);
  const start = performance.now();
  let round = 0;
  while (performance.now() - start < seconds * 1000) {
    const history = Array.from({ length: 10 }, pick);
    const base = history.slice(0, 8);
    const longer = [...base, pick()];
    const order = round % 2 ? [...modules.keys()].reverse() : [...modules.keys()];
    for (const i of order) {
      const t = performance.now();
      recommenders[i].hidden(history);
      fresh[i].push(performance.now() - t);
    }
    for (const i of order) {
      await recommenders[i].recommend(base, { mode, backend: "cpu" });
      const t = performance.now();
      await recommenders[i].recommend(longer, { mode, backend: "cpu" });
      grown[i].push(performance.now() - t);
    }
    round++;
  }
  const median = (values) => values.sort((a, b) => a - b)[values.length >> 1];
  return { rounds: round, fresh: fresh.map(median), grown: grown.map(median) };
}

const job = { manifest, seconds, mode: options["--mode"], blob: names[3], itemParts: names.slice(4) };
let result;
let where;
if (inNode) {
  const modules = [];
  for (const [i, build] of builds.entries()) {
    const mod = await import(`${pathToFileURL(`${build.dir}/l2d.js`).href}?${i}`);
    build.wasm = existsSync(`${build.dir}/${wasmBuild()}`) ? wasmBuild() : "l2d_bg.wasm";
    await mod.default({ module_or_path: readFileSync(`${build.dir}/${build.wasm}`) });
    modules.push(mod);
  }
  result = await measure({ ...job, modules, bytes: async (name) => new Uint8Array(file(name)) });
  where = `Node ${process.version}`;
} else {
  const { chromium } = await import("playwright-core");
  const browser = await chromium.launch({ executablePath: "/usr/bin/chromium", args: ["--no-sandbox"] });
  const page = await browser.newPage();
  // One origin serves each build (b0/, b1/, …) and the model (model/), from this process.
  await page.route("http://ab.test/**", (route) => {
    const path = new URL(route.request().url()).pathname.slice(1);
    if (path === "") return route.fulfill({ body: "<!doctype html><title>l2d A/B</title>", contentType: "text/html" });
    const [head, ...rest] = path.split("/");
    const at = head === "model" ? `${model}/${rest.join("/")}` : head === "www" ? new URL(`../www/${rest.join("/")}`, import.meta.url) : `${builds[Number(head.slice(1))].dir}/${rest.join("/")}`;
    if (!existsSync(at)) return route.fulfill({ status: 404, body: "" });
    const body = readFileSync(at);
    const type = path.endsWith(".js") ? "text/javascript" : path.endsWith(".wasm") ? "application/wasm" : "application/octet-stream";
    return route.fulfill({ body, contentType: type });
  });
  await page.goto("http://ab.test/");
  // --profile FILE: the page's CPU profile (Chrome DevTools' .cpuprofile, wasm functions by name).
  const cdp = options["--profile"] ? await page.context().newCDPSession(page) : null;
  if (cdp) {
    await cdp.send("Profiler.enable");
    await cdp.send("Profiler.start");
  }
  result = await page.evaluate(
    async ({ source, job, count }) => {
      const { wasmBuild } = await import("/www/l2d-simd.js");
      const modules = [];
      const wasms = [];
      for (let i = 0; i < count; i++) {
        const mod = await import(`/b${i}/l2d.js`);
        const wasm = (await fetch(`/b${i}/${wasmBuild()}`, { method: "HEAD" })).ok ? wasmBuild() : "l2d_bg.wasm";
        await mod.default({ module_or_path: `/b${i}/${wasm}` });
        modules.push(mod);
        wasms.push(wasm);
      }
      const bytes = async (name) => new Uint8Array(await (await fetch(`/model/${name}`)).arrayBuffer());
      return { ...(await (0, eval)(`(${source})`)({ ...job, modules, bytes })), wasms };
    },
    { source: measure.toString(), job, count: builds.length },
  );
  where = `Chromium ${browser.version()}`;
  result.wasms.forEach((wasm, i) => (builds[i].wasm = wasm));
  if (cdp) writeFileSync(options["--profile"], JSON.stringify((await cdp.send("Profiler.stop")).profile));
  await browser.close();
}
builds.forEach(({ name }, i) =>
  console.log(
    `${name}: ${result.rounds} rounds (${where}, ${builds[i].wasm}), fresh hidden median ${result.fresh[i].toFixed(2)} ms, ` +
      `grown-by-one recommend (${job.mode}, cpu) median ${result.grown[i].toFixed(2)} ms`,
  ),
);
