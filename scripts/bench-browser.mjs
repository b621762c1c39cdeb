// Runs www/bench.html in headless Chromium twice in one profile (cold, then warm from the Cache
// API) and prints both reports, each with the bytes the visit downloaded (the server gzips as a
// CDN does; bytes on the wire, headers included, by file); with --soak N, one run of N recommendations over random
// histories instead (wasm memory and p99 drift); with --catalog N,N,…, a catalog-size sweep on
// synthetic L2D-G catalogs (int8, `l2d synth` with the shipped model, written to
// target/synth/cN/ unless there); with --model DIR (a deployed folder inside the repository,
// default models/default), that folder's manifest. Needs pkg/ (scripts/build-web.sh), `npm install`, and for
// --catalog the release binary (cargo build --release).
// With --profile slow4g|fast4g|none: a shopper's visits to the storefront (www/shop.html)
// instead, the network shaped by the server for the page and its worker alike (serve.py
// --network), and with --cpu-quota F every thread of the browser together held to F of one
// core (a cgroup v1 CPU quota with a 10 ms period; needs root): bytes before the first
// recommendation, navigation → tier 0 ready and → model ready, clicks → re-render on each tier,
// the worker's encode time (to show the quota reaches it), long tasks on the page's thread, and
// the page's Largest Contentful Paint with and without the widget.
//   node scripts/bench-browser.mjs [--model DIR] [--soak 10000 | --catalog 10000,100000,1000000]
//   node scripts/bench-browser.mjs --profile slow4g [--cpu-quota 0.25]
import { chromium } from "playwright-core";
import { spawn, execFileSync } from "node:child_process";
import { existsSync, mkdirSync, linkSync, copyFileSync, writeFileSync, chmodSync } from "node:fs";

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
const profile = arg("--profile");
if (profile) {
  await shopperVisits(profile, Number(arg("--cpu-quota") ?? 0));
  process.exit(0);
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

// ---- --profile: a shopper's first and returning visits to the storefront ----

// A launcher that puts the browser (and so every process and thread it starts) into a cgroup
// whose CPU quota is `quota` of one core per 10 ms period.
function cpuLimitedChromium(quota) {
  if (!quota) return "/usr/bin/chromium";
  const group = "/sys/fs/cgroup/cpu/l2d-bench";
  mkdirSync(group, { recursive: true });
  writeFileSync(`${group}/cpu.cfs_period_us`, "10000");
  writeFileSync(`${group}/cpu.cfs_quota_us`, String(Math.round(10000 * quota)));
  const launcher = `${ROOT}target/chromium-in-cgroup.sh`;
  writeFileSync(launcher, `#!/bin/sh\necho $$ > ${group}/cgroup.procs\nexec /usr/bin/chromium "$@"\n`);
  chmodSync(launcher, 0o755);
  return launcher;
}

// Page-side probes, before any script of the page: long tasks, LCP, each re-render's time after
// the click that caused it, and the worker's encode times.
function probes() {
  window.__bench = { longTasks: [], lcp: 0, renders: [], encodeMs: [] };
  new PerformanceObserver((l) => l.getEntries().forEach((e) => window.__bench.longTasks.push(Math.round(e.duration)))).observe({ type: "longtask", buffered: true });
  new PerformanceObserver((l) => l.getEntries().forEach((e) => (window.__bench.lcp = e.startTime))).observe({ type: "largest-contentful-paint", buffered: true });
  document.addEventListener("click", () => (window.__bench.clickAt = performance.now()), true);
  window.addEventListener("l2d-recommendations", (e) => window.__bench.encodeMs.push(e.detail.encodeMs), true);
  const watch = () => {
    const w = document.getElementById("widget");
    if (!w) return setTimeout(watch, 5);
    new MutationObserver(() => {
      if (window.__bench.clickAt !== undefined && w.dataset.items) {
        window.__bench.renders.push({ tier: w.dataset.tier, ms: performance.now() - window.__bench.clickAt });
        window.__bench.clickAt = undefined;
      }
    }).observe(w, { attributes: true, attributeFilter: ["data-items"] });
  };
  document.addEventListener("DOMContentLoaded", watch);
}

function quantile(xs, q) {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.min(s.length - 1, Math.floor(q * s.length))] : NaN;
}

async function clickAndWait(page, index) {
  const before = await page.evaluate(() => window.__bench.renders.length);
  await page.evaluate((i) => document.querySelectorAll(".product")[i].click(), index);
  await page.waitForFunction((n) => window.__bench.renders.length > n, before, { timeout: 120000 });
}

async function shopperVisits(profile, quota) {
  const port = 19080 + Math.floor(Math.random() * 500);
  const server = spawn("python3", [`${ROOT}scripts/serve.py`, "--port", String(port), "--quiet", "--gzip", "--network", profile], { stdio: ["ignore", "pipe", "inherit"] });
  await new Promise((resolve) => server.stdout.once("data", resolve));
  const browser = await chromium.launch({
    executablePath: cpuLimitedChromium(quota),
    args: ["--no-sandbox", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"],
  });
  const url = (query = "") => `http://127.0.0.1:${port}/www/shop.html${query}`;
  console.log(`profile ${profile}, CPU ${quota ? `${quota} of one core for the whole browser (cgroup quota)` : "not limited"}; ${url()}`);
  const context = await browser.newContext();
  await context.addInitScript(probes);
  const page = await context.newPage();
  let wire = 0;
  page.on("requestfinished", async (r) => {
    const s = await r.sizes();
    wire += s.responseBodySize + s.responseHeadersSize;
  });
  const report = {};
  for (const visit of ["first", "returning"]) {
    wire = 0;
    await page.goto(url());
    await page.waitForFunction(() => performance.getEntriesByName("l2d-tier0-ready").length > 0, null, { timeout: 600000 });
    // Tier 0 answers clicks while the model loads (as many as fit before it is ready, at most 5).
    let clicks = 0;
    while (clicks < 5 && !(await page.evaluate(() => performance.getEntriesByName("l2d-model-ready").length))) {
      await clickAndWait(page, clicks + 3);
      clicks += 1;
    }
    await page.waitForFunction(() => performance.getEntriesByName("l2d-model-ready").length > 0, null, { timeout: 1800000 });
    for (let i = 0; i < 15; i++) await clickAndWait(page, 10 + i);
    const m = await page.evaluate(() => {
      const at = (name) => performance.getEntriesByName(name)[0].startTime;
      const tier0 = at("l2d-tier0-ready");
      const nav = performance.getEntriesByType("navigation")[0];
      const before = (nav ? nav.transferSize : 0) + performance.getEntriesByType("resource").filter((e) => e.responseEnd <= tier0).reduce((a, e) => a + e.transferSize, 0);
      return { tier0, model: at("l2d-model-ready"), before, ...window.__bench };
    });
    await new Promise((r) => setTimeout(r, 500));
    const renders = (tier) => m.renders.filter((r) => r.tier === tier).map((r) => r.ms);
    const line = {
      "bytes before the first recommendation (MB, gzip as served)": (m.before / 1e6).toFixed(3),
      "navigation → tier 0 ready (s)": (m.tier0 / 1000).toFixed(2),
      "navigation → model ready (s)": (m.model / 1000).toFixed(2),
      "all bytes of the visit (MB)": (wire / 1e6).toFixed(2),
      "click → re-render, tier 0, p50 / p90 (ms)": `${quantile(renders("0"), 0.5).toFixed(1)} / ${quantile(renders("0"), 0.9).toFixed(1)} (${renders("0").length} clicks)`,
      "click → re-render, tier 1, p50 / p90 (ms)": `${quantile(renders("1"), 0.5).toFixed(1)} / ${quantile(renders("1"), 0.9).toFixed(1)} (${renders("1").length} clicks)`,
      "worker encode, p50 (ms)": quantile(m.encodeMs, 0.5).toFixed(1),
      "long tasks on the page's thread (ms)": JSON.stringify(m.longTasks),
      "LCP with the widget (ms)": Math.round(m.lcp),
    };
    report[visit] = line;
    console.log(`${visit} visit:`);
    for (const [k, v] of Object.entries(line)) console.log(`  ${k}: ${v}`);
  }
  // LCP of a first visit with and without the widget (the same page, ?widget=0), in fresh
  // profiles, alternating, five of each: the medians and their ratio.
  const lcp = { with: [], without: [] };
  for (let run = 0; run < 5; run++) {
    for (const [key, query] of [["with", ""], ["without", "?widget=0"]]) {
      const fresh = await browser.newContext();
      await fresh.addInitScript(probes);
      const p = await fresh.newPage();
      await p.goto(url(query));
      await p.waitForSelector("body[data-ready=products]", { timeout: 600000 });
      await new Promise((r) => setTimeout(r, 300));
      lcp[key].push(await p.evaluate(() => window.__bench.lcp));
      await fresh.close();
    }
  }
  const [w, wo] = [quantile(lcp.with, 0.5), quantile(lcp.without, 0.5)];
  console.log(`first visit, LCP (median of 5 fresh profiles each): with the widget ${Math.round(w)} ms [${lcp.with.map(Math.round)}], without ${Math.round(wo)} ms [${lcp.without.map(Math.round)}]: ${(w / wo).toFixed(2)}×`);
  await browser.close();
  server.kill();
}
