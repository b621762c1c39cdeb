// Page-level tests of the storefront widget and the paper demo, in Debian's Chromium driven by
// playwright-core (no browser download). Run by scripts/test.sh after scripts/build-web.sh.
//   node tests/pages.mjs [--screenshots] [--only SUBSTRING]
import { chromium } from "playwright-core";
import { spawn, spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import assert from "node:assert/strict";
import { assertStyled, widgetStyle } from "./storefront.mjs";

const ROOT = new URL("..", import.meta.url).pathname;
const SCREENSHOTS = process.argv.includes("--screenshots");
const ONLY = process.argv.includes("--only") ? process.argv[process.argv.indexOf("--only") + 1] : null;
const FLAGS = ["--no-sandbox", "--disable-dev-shm-usage", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"];

function serve(port, extra = []) {
  const child = spawn("python3", [`${ROOT}scripts/serve.py`, "--port", String(port), "--quiet", ...extra], { stdio: ["ignore", "pipe", "inherit"] });
  return new Promise((resolve, reject) => {
    child.stdout.once("data", () => resolve(child));
    child.once("exit", (code) => reject(new Error(`server on ${port} exited with ${code}`)));
  });
}

// Every Content-Security-Policy violation any page reports (its `securitypolicyviolation` events
// and the engine's console messages about the policy): a test that adds one fails.
const cspViolations = [];
const CSP_MESSAGE = /Content[- ]Security[- ]Policy|\[csp\]/i;
function watchCsp(page) {
  page.on("console", (m) => CSP_MESSAGE.test(m.text()) && cspViolations.push(`${page.url()}: ${m.text()}`));
}
async function watchContext(context) {
  await context.addInitScript(() => {
    document.addEventListener(
      "securitypolicyviolation",
      (e) => console.error(`[csp] ${e.violatedDirective} blocked ${e.blockedURI || "inline"} in ${e.sourceFile}:${e.lineNumber}`),
      true,
    );
  });
  context.on("page", watchCsp);
  return context;
}

async function browser(webgpu = true) {
  const launched = await chromium.launch({ executablePath: "/usr/bin/chromium", headless: true, args: [...FLAGS, ...(webgpu ? ["--enable-unsafe-webgpu"] : [])] });
  const newContext = launched.newContext.bind(launched);
  launched.newContext = async (options) => watchContext(await newContext(options));
  launched.newPage = async (options) => (await launched.newContext(options)).newPage();
  return launched;
}

const results = [];
// The weights file a page fetches for manifest `m`: the library's rule (Manifest::weights_file),
// from the built package the pages load.
const wasm = await import(new URL("../pkg/l2d.js", import.meta.url).href);
await wasm.default({ module_or_path: readFileSync(`${ROOT}pkg/l2d_bg.wasm`) });
const weightsFile = (m) => wasm.weightsFile(JSON.stringify(m));
const WEIGHTS = weightsFile(JSON.parse(readFileSync(`${ROOT}models/default/manifest.json`, "utf8")));
async function test(name, body) {
  if (ONLY && !name.includes(ONLY)) return;
  const start = Date.now();
  const violationsBefore = cspViolations.length;
  try {
    await body();
    const added = cspViolations.slice(violationsBefore);
    assert.deepEqual(added, [], "Content-Security-Policy violations");
    results.push([name, "ok"]);
    console.log(`ok   ${name} (${((Date.now() - start) / 1000).toFixed(1)} s)`);
  } catch (e) {
    results.push([name, "FAILED"]);
    console.log(`FAIL ${name}: ${e.stack || e}`);
  }
}

async function widgetItems(page) {
  return page.evaluate(() => document.getElementById("widget")?.dataset.items ?? "");
}

async function waitForItems(page, previous = null) {
  await page.waitForFunction(
    (prev) => {
      const w = document.getElementById("widget");
      return w && w.dataset.items && w.dataset.items !== prev;
    },
    previous,
    { timeout: 120000 },
  );
  return (await widgetItems(page)).split(",");
}

// Clicks n products; by default once the model tier is ready (`ready: false` clicks as soon as
// the products are listed, which the first tier answers).
async function clickProducts(page, n, first = 3, { ready = true } = {}) {
  await page.waitForSelector("body[data-ready=products]", { timeout: 120000 });
  if (ready) await page.waitForSelector("#widget[data-state=ready]", { timeout: 120000 });
  const cards = await page.$$(".product");
  const ids = [];
  let previous = null;
  const lists = [];
  for (const card of cards.slice(first, first + n)) {
    ids.push(await card.getAttribute("data-id"));
    await card.click();
    const items = await waitForItems(page, previous);
    previous = items.join(",");
    lists.push(items);
  }
  return { ids, lists };
}

const catalogTitles = new Map();
function loadCatalog() {
  for (const line of readFileSync(`${ROOT}target/data/ml-latest-small/catalog.jsonl`, "utf8").split("\n")) {
    if (line.trim()) {
      const item = JSON.parse(line);
      catalogTitles.set(item.id, item.title);
    }
  }
}

// A copy of the shipped memory blob whose first title is hostile HTML, and a manifest that
// vouches for it (the blob's own checksum and the manifest's sha256 are recomputed).
function hostileAssets() {
  const blob = Buffer.from(readFileSync(`${ROOT}models/default/memory.blob`));
  const manifest = JSON.parse(readFileSync(`${ROOT}models/default/manifest.json`, "utf8"));
  const itemsFile = manifest.items[0];
  const lines = readFileSync(`${ROOT}models/default/${itemsFile}`, "utf8").split("\n");
  const first = JSON.parse(lines[0]);
  lines[0] = JSON.stringify({ id: first.id, title: "<img src=x onerror=window.__xss=1>" });
  const items = Buffer.from(lines.join("\n"), "utf8");
  // The blob's header carries its items parts' sha256 (bytes 96..128).
  createHash("sha256").update(items).digest().copy(blob, 96);
  manifest.files["memory.blob"].sha256 = createHash("sha256").update(blob).digest("hex");
  manifest.files[itemsFile].sha256 = createHash("sha256").update(items).digest("hex");
  manifest.files[itemsFile].bytes = items.length;
  return { blob, items, itemsFile, manifest: JSON.stringify(manifest), firstId: first.id };
}

// A seeded MovieLens-format log: `users` users walking a 30-item catalog (next items are
// predictable), as tests/cli.rs writes it.
function writeRawLog(dir, users) {
  let state = 17;
  const next = (n) => {
    state = (state * 1103515245 + 12345) % 2147483648;
    return state % n;
  };
  const rows = ["userId,movieId,rating,timestamp"];
  let t = 1000000;
  for (let u = 1; u <= users; u++) {
    let item = next(30) + 1;
    for (let j = 0, n = 12 + next(9); j < n; j++) {
      rows.push(`${u},${item},4.0,${t++}`);
      item = ((item + 1 + next(3)) % 30) + 1;
    }
  }
  mkdirSync(dir, { recursive: true });
  writeFileSync(`${dir}/ratings.csv`, rows.join("\n") + "\n");
  const movies = ["movieId,title,genres"];
  for (let i = 1; i <= 30; i++) movies.push(`${i},Film number ${i} (${1980 + i}),Drama`);
  writeFileSync(`${dir}/movies.csv`, movies.join("\n") + "\n");
}

// `l2d build` of a tiny model on the log in `dir` (target/release/l2d, built by cargo test).
function l2dBuild(dir, extra = []) {
  const args = ["build", "--interactions", `${dir}/ratings.csv`, "--items", `${dir}/movies.csv`, "--out", `${dir}/out`,
    "--vocab-size", "300", "--hidden", "32", "--layers", "1", "--heads", "2", "--intermediate", "64",
    "--batch-tokens", "512", "--epochs", "2", "--sasrec-minutes", "0.01", ...extra];
  const run = spawnSync(`${ROOT}target/release/l2d`, args, { encoding: "utf8", env: { ...process.env, RAYON_NUM_THREADS: "1" } });
  assert.equal(run.status, 0, `l2d build failed:\n${run.stderr}`);
  return JSON.parse(readFileSync(`${dir}/out/site/manifest.json`, "utf8"));
}

// Serves `dir`'s files under `prefix` in `context` (recording the names fetched).
async function routeDir(context, prefix, dir, fetched = []) {
  await context.route((u) => u.pathname.startsWith(prefix), (route) => {
    const name = new URL(route.request().url()).pathname.slice(prefix.length);
    fetched.push(name);
    try {
      const type = name.endsWith(".js") ? "text/javascript" : name.endsWith(".wasm") ? "application/wasm" : name.endsWith(".html") ? "text/html" : "application/octet-stream";
      route.fulfill({ body: readFileSync(`${dir()}/${name}`), contentType: type });
    } catch {
      route.fulfill({ status: 404, body: "" });
    }
  });
  return fetched;
}

async function cachedUrls(page, prefix) {
  return page.evaluate(async (p) => {
    const cache = await caches.open("l2d-v1");
    return (await cache.keys()).map((r) => new URL(r.url).pathname).filter((u) => u.startsWith(p)).sort();
  }, prefix);
}

async function main() {
  loadCatalog();
  const port = 18080 + Math.floor(Math.random() * 1000);
  const cdnPort = port + 1;
  const base = `http://127.0.0.1:${port}`;
  const cdn = `http://127.0.0.1:${cdnPort}`;
  const servers = [
    await serve(port, ["--connect-src", `${cdn} http://127.0.0.1:${cdnPort + 1}`]),
    await serve(cdnPort, ["--cors", "*", "--gzip"]), // a CDN compresses what it serves
    await serve(cdnPort + 1, []), // the same files without CORS headers
  ];
  // The page may connect to both (CORS, not the page's CSP, is what refuses the second).
  const noCors = `http://127.0.0.1:${cdnPort + 1}`;
  servers[0].connectSrc = cdn;
  const gpuBrowser = await browser(true);

  await test("served pages carry a CSP without unsafe-eval", async () => {
    const response = await fetch(`${base}/www/shop.html`);
    const csp = response.headers.get("content-security-policy");
    assert.ok(csp.includes("'wasm-unsafe-eval'"), csp);
    assert.ok(!csp.includes("'unsafe-eval'"), csp);
    const wasm = await fetch(`${base}/pkg/l2d_bg.wasm`);
    assert.equal(wasm.headers.get("content-type"), "application/wasm");
    assert.equal((await fetch(`${base}/scripts/serve.py`)).status, 404);
    assert.equal((await fetch(`${base}/scripts/serve.py`, { method: "HEAD" })).status, 404);
    assert.equal((await fetch(`${base}/`, { method: "HEAD", redirect: "manual" })).status, 302);
  });

  await test("storefront: clicks → recommendations that exclude them and change; reload keeps; clear empties", async () => {
    const context = await gpuBrowser.newContext();
    const page = await context.newPage();
    const errors = [];
    page.on("pageerror", (e) => errors.push(e.message));
    await page.goto(`${base}/www/shop.html`);
    const { ids, lists } = await clickProducts(page, 3);
    assert.equal(lists.length, 3);
    for (const list of lists) assert.ok(list.length === 8, `8 items, got ${list}`);
    // The widget's own styles apply under the server's `style-src 'self'`.
    assertStyled(await page.evaluate(widgetStyle));
    for (const id of ids) assert.ok(!lists[2].includes(id), `clicked ${id} recommended`);
    assert.notDeepEqual(lists[0], lists[2], "recommendations should change with the history");
    const stored = await page.evaluate(() => JSON.parse(localStorage.getItem("l2d-history")));
    assert.deepEqual(stored, ids);
    if (SCREENSHOTS) await page.screenshot({ path: `${ROOT}docs/guide/storefront.png`, fullPage: false });
    await page.reload();
    await page.waitForSelector("#widget[data-tier='1']", { timeout: 120000 });
    assert.deepEqual(await widgetItems(page), lists[2].join(","));
    await page.evaluate(() => window.l2d.history.clear());
    await page.waitForFunction(() => document.getElementById("widget").dataset.items === "");
    assert.deepEqual(await page.evaluate(() => localStorage.getItem("l2d-history")), "[]");
    assert.deepEqual(errors, []);
    await context.close();
  });

  await test("first tier: clicks before the model loads get the follows ranking at once, the model's list replaces it in place, no widget task of 50 ms", async () => {
    const context = await gpuBrowser.newContext();
    const page = await context.newPage();
    let release;
    const held = new Promise((resolve) => (release = resolve));
    await page.route(`**/models/default/${WEIGHTS}`, async (route) => {
      await held;
      return route.continue();
    });
    await page.addInitScript(() => {
      window.__longTasks = [];
      new PerformanceObserver((list) => list.getEntries().forEach((e) => window.__longTasks.push(Math.round(e.duration)))).observe({ type: "longtask", buffered: true });
    });
    await page.goto(`${base}/www/shop.html`);
    const { lists } = await clickProducts(page, 2, 3, { ready: false });
    for (const list of lists) assert.equal(list.length, 8, `8 items from the first tier, got ${list}`);
    assert.equal(await page.evaluate(() => document.getElementById("widget").dataset.tier), "0");
    const box = () => page.evaluate(() => document.getElementById("widget").shadowRoot.querySelectorAll("li").length);
    assert.equal(await box(), 8);
    release();
    await page.waitForSelector("#widget[data-tier='1']", { timeout: 120000 });
    assert.equal(await box(), 8, "the model's list has the same length");
    // The widget's own work on the page's thread (each timed as an `l2d-task` measure) stays
    // under a long task's 50 ms; the page's long tasks are printed for the record.
    const tasks = await page.evaluate(() => performance.getEntriesByType("measure").filter((m) => m.name.startsWith("l2d-task")).map((m) => [m.name, Math.round(m.duration)]));
    const longTasks = await page.evaluate(() => window.__longTasks);
    console.log(`     the widget's tasks (ms): ${JSON.stringify(tasks)}; long tasks on the page's thread (ms): [${longTasks}]`);
    assert.ok(tasks.some(([name]) => name.includes("parse follows.bin")), "the first tier's parse was timed");
    assert.deepEqual(tasks.filter(([, ms]) => ms >= 50), [], "widget tasks of 50 ms or more");
    await context.close();
  });

  await test("Save-Data keeps the widget on the first tier: the model is never fetched", async () => {
    const context = await gpuBrowser.newContext();
    const page = await context.newPage();
    const cdp = await context.newCDPSession(page);
    // navigator.connection.saveData, as a browser in data-saver mode reports it.
    await cdp.send("Emulation.setDataSaverOverride", { dataSaverEnabled: true });
    const fetched = [];
    page.on("request", (r) => fetched.push(new URL(r.url()).pathname));
    await page.goto(`${base}/www/shop.html`);
    await clickProducts(page, 2, 3, { ready: false });
    await page.waitForLoadState("load");
    await page.waitForTimeout(1000);
    assert.equal(await page.evaluate(() => document.getElementById("widget").dataset.model), "save-data");
    assert.equal(await page.evaluate(() => document.getElementById("widget").dataset.tier), "0");
    const heavy = fetched.filter((p) => /safetensors|\.blob|\.wasm|tokenizer\.json/.test(p));
    assert.deepEqual(heavy, [], `fetched ${heavy}`);
    await context.close();
  });

  await test("privacy: only static GETs, no history id or title in any request, no beacon or websocket", async () => {
    const context = await gpuBrowser.newContext();
    await context.addInitScript(() => {
      window.__sent = [];
      const beacon = navigator.sendBeacon?.bind(navigator);
      navigator.sendBeacon = (...args) => {
        window.__sent.push(["beacon", String(args[0])]);
        return beacon ? beacon(...args) : false;
      };
      const WS = window.WebSocket;
      window.WebSocket = function (...args) {
        window.__sent.push(["websocket", String(args[0])]);
        return new WS(...args);
      };
    });
    const requests = [];
    const sockets = [];
    context.on("request", (r) => requests.push({ method: r.method(), url: r.url(), headers: r.headers(), body: r.postData() || "" }));
    const page = await context.newPage();
    page.on("websocket", (ws) => sockets.push(ws.url()));
    await page.goto(`${base}/www/shop.html`);
    const { ids } = await clickProducts(page, 3);
    const secrets = ids.flatMap((id) => [id, catalogTitles.get(id), encodeURIComponent(catalogTitles.get(id))]);
    assert.ok(requests.length > 0);
    for (const r of requests) {
      const where = new URL(r.url);
      assert.equal(r.method, "GET", `${r.method} ${r.url}`);
      assert.equal(where.origin, base, r.url);
      assert.ok(/^\/(www|pkg|models)\//.test(where.pathname), `unexpected request ${r.url}`);
      const haystack = `${r.url}\n${JSON.stringify(r.headers)}\n${r.body}`;
      for (const secret of secrets) {
        // Item ids are short numbers: look for them as whole path/query tokens only.
        const pattern = /^\d+$/.test(secret) ? new RegExp(`[=/,&?]${secret}(?:[,&/]|$)`) : null;
        const leaked = pattern ? pattern.test(where.pathname + where.search) || r.body.includes(secret) : haystack.includes(secret);
        assert.ok(!leaked, `request ${r.url} carries history item ${secret}`);
      }
    }
    assert.deepEqual(await page.evaluate(() => window.__sent), []);
    assert.deepEqual(sockets, []);
    await context.close();
  });

  await test("privacy: two different histories make the same requests (every items part, in the same order)", async () => {
    const manifest = JSON.parse(readFileSync(`${ROOT}models/default/manifest.json`, "utf8"));
    const visit = async (first) => {
      const context = await gpuBrowser.newContext();
      const requests = [];
      context.on("request", (r) => requests.push(`${r.method()} ${new URL(r.url()).pathname}${new URL(r.url()).search}`));
      const page = await context.newPage();
      await page.goto(`${base}/www/shop.html`);
      const { ids, lists } = await clickProducts(page, 3, first);
      await context.close();
      return { ids, lists, requests };
    };
    const [a, b] = [await visit(3), await visit(20)];
    assert.notDeepEqual(a.ids, b.ids);
    assert.notDeepEqual(a.lists.at(-1), b.lists.at(-1), "the histories got different recommendations");
    // The model, blob and items parts are fetched one after the other: the same sequence.
    const data = (r) => r.filter((line) => line.includes("/models/"));
    assert.deepEqual(data(a.requests), data(b.requests));
    for (const part of manifest.items) {
      assert.ok(data(a.requests).includes(`GET /models/default/${part}`), `items part ${part} fetched`);
    }
    // Page assets may load in parallel: the same requests, in any order.
    assert.deepEqual([...a.requests].sort(), [...b.requests].sort());
  });

  await test("a hostile catalog title renders as text", async () => {
    const hostile = hostileAssets();
    const context = await gpuBrowser.newContext();
    const page = await context.newPage();
    await page.route("**/models/default/manifest.json", (route) => route.fulfill({ body: hostile.manifest, contentType: "application/json" }));
    await page.route("**/models/default/memory.blob", (route) => route.fulfill({ body: hostile.blob, contentType: "application/octet-stream" }));
    await page.route(`**/models/default/${hostile.itemsFile}`, (route) => route.fulfill({ body: hostile.items, contentType: "application/x-ndjson" }));
    await page.goto(`${base}/www/shop.html`);
    await page.waitForSelector("body[data-ready=products]", { timeout: 120000 });
    await page.fill("#search", "<img");
    const card = await page.waitForSelector(".product");
    assert.equal(await card.textContent(), "<img src=x onerror=window.__xss=1>");
    assert.equal(await page.$$eval(".product img", (imgs) => imgs.length), 0);
    await card.click();
    await waitForItems(page);
    assert.equal(await page.evaluate(() => window.__xss), undefined);
    await context.close();
  });

  await test("demo page shows the shipped scoring, L2D-G, L2D-L and beam with their timings", async () => {
    const context = await gpuBrowser.newContext({ viewport: { width: 1500, height: 950 } });
    const page = await context.newPage();
    await page.goto(`${base}/www/index.html`);
    // "loaded" turns into "results" as soon as the example history is decoded, which can be
    // quicker than a poll: either state means the model loaded.
    await page.waitForSelector("body[data-ready=loaded], body[data-ready=results]", { timeout: 120000 });
    // A first visit opens with the example history already decoded by every method.
    await page.waitForFunction(() => ["shipped", "global", "local", "beam"].every((id) => document.querySelectorAll(`#${id}-list li`).length > 0), null, { timeout: 120000 });
    assert.equal((await page.$$("#history li")).length, 3, "the example history");
    // Chromium has relaxed SIMD: the worker loads that build (l2d_relaxed_bg.wasm).
    assert.match(await page.textContent("#status"), /runs on relaxed SIMD/);
    for (const query of ["Heat (1995)", "Fargo (1996)", "Casino (1995)"]) {
      await page.fill("#search", query);
      await (await page.waitForSelector("#search-results li")).click();
    }
    // All four lists decoded for the six-item history (an earlier history's lists can still
    // be on the page while the last one decodes).
    await page.waitForSelector("body[data-decoded='6']", { timeout: 120000 });
    // The shipped column names the manifest's scoring (density and the follows term here).
    assert.match(await page.textContent("#shipped-scoring"), /^density \+ follows/);
    for (const id of ["shipped", "global", "local", "beam"]) {
      assert.ok((await page.$$(`#${id}-list li`)).length > 0, `${id} list empty`);
      assert.match(await page.textContent(`#${id}-time`), /\d+(\.\d+)? ms/);
    }
    assert.equal((await page.$$("#latency-chart .row")).length, 4);
    if (SCREENSHOTS) await page.screenshot({ path: `${ROOT}docs/guide/demo.png`, fullPage: true });
    await context.close();
  });

  await test("second visit reads model and blob from the Cache API", async () => {
    const context = await gpuBrowser.newContext();
    const page = await context.newPage();
    await page.goto(`${base}/www/shop.html`);
    await page.waitForSelector("#widget[data-state=ready]", { timeout: 120000 });
    const second = [];
    page.on("request", (r) => second.push(new URL(r.url()).pathname));
    await page.reload();
    await page.waitForSelector("#widget[data-state=ready]", { timeout: 120000 });
    const heavy = second.filter((p) => /model\.safetensors|\.blob|tokenizer\.json/.test(p));
    assert.deepEqual(heavy, [], `re-downloaded ${heavy}`);
    await context.close();
  });

  await test("without WebGPU the widget works on the CPU", async () => {
    const plain = await browser(false);
    const page = await plain.newPage();
    await page.goto(`${base}/www/shop.html`);
    await clickProducts(page, 1);
    assert.equal(await page.evaluate(() => document.getElementById("widget").dataset.backend), "cpu");
    const status = await page.evaluate(() => document.getElementById("widget").shadowRoot.querySelector(".status").textContent);
    assert.doesNotMatch(status, /cpu|webgpu|ms/, `a shopper sees diagnostics: ${status}`);
    await plain.close();
  });

  await test("CDN layout: model and blob from another origin with CORS; without CORS a clear error", async () => {
    const context = await gpuBrowser.newContext();
    const page = await context.newPage();
    const fromCdn = [];
    page.on("request", (r) => r.url().startsWith(cdn) && fromCdn.push(r.url()));
    await page.goto(`${base}/www/shop.html?manifest=${encodeURIComponent(`${cdn}/models/default/manifest.json`)}`);
    await clickProducts(page, 2);
    assert.ok(fromCdn.some((u) => u.endsWith(`/${WEIGHTS}`)), "weights came from the CDN origin");
    await page.goto(`${base}/www/shop.html?manifest=${encodeURIComponent(`${noCors}/models/default/manifest.json`)}`);
    await page.waitForFunction(() => document.getElementById("widget")?.dataset.state === "error", null, { timeout: 60000 });
    const status = await page.evaluate(() => document.getElementById("widget").shadowRoot.querySelector(".status").textContent);
    assert.match(status, /unavailable/);
    await context.close();
  });

  await test("a gzip-serving CDN: progress counts each file's own bytes against the manifest's size, and recommendations work", async () => {
    const context = await gpuBrowser.newContext();
    const page = await context.newPage();
    const encodings = {};
    page.on("response", (r) => {
      if (r.url().startsWith(cdn)) encodings[new URL(r.url()).pathname.split("/").pop()] = r.headers()["content-encoding"];
    });
    await page.goto(`${base}/www/shop.html`);
    const { events, items } = await page.evaluate(async (manifestUrl) => {
      const { L2DClient } = await import("/www/l2d-client.js");
      const client = new L2DClient();
      const events = [];
      await client.load({ manifestUrl, cacheName: "l2d-gzip-test" }, (p) => events.push(p));
      const result = await client.recommend(["260", "1196"], { k: 5 });
      return { events, items: result.items.length };
    }, `${cdn}/models/default/manifest.json`);
    assert.equal(encodings[WEIGHTS], "gzip", "the CDN compressed the weights");
    const files = JSON.parse(readFileSync(`${ROOT}models/default/manifest.json`, "utf8")).files;
    for (const name of ["config.json", WEIGHTS, "tokenizer.json", "l2d.json", "memory.blob"]) {
      const own = events.filter((e) => e.file === name);
      assert.ok(own.length > 0, `no progress for ${name}`);
      for (const e of own) assert.ok(e.loaded <= e.total, `${name}: ${e.loaded} of ${e.total}`);
      const last = own[own.length - 1];
      assert.deepEqual([last.loaded, last.total], [files[name].bytes, files[name].bytes], name);
    }
    assert.equal(items, 5);
    await context.close();
  });

  await test("download faults: bad sha256, 404, network failure, truncated body fail the model tier quietly, the first tier keeps answering, nothing bad is cached, and a retry works", async () => {
    for (const [file, fault, expected] of [
      ["memory.blob", (route, body) => { body[200] ^= 0xff; return route.fulfill({ body }); }, /sha256 mismatch/],
      [WEIGHTS, (route) => route.fulfill({ status: 404, body: "gone" }), /HTTP 404/],
      ["tokenizer.json", (route) => route.abort("failed"), /network error/],
      ["memory.blob", (route, body) => route.fulfill({ body: body.subarray(0, body.length >> 1) }), /sha256 mismatch/],
    ]) {
      const context = await gpuBrowser.newContext();
      const page = await context.newPage();
      const pattern = `**/models/default/${file}`;
      await page.route(pattern, async (route) => {
        const response = await route.fetch();
        return fault(route, Buffer.from(await response.body()));
      });
      await page.goto(`${base}/www/shop.html`);
      await page.waitForFunction(() => document.getElementById("widget")?.dataset.state === "error", null, { timeout: 60000 });
      const error = await page.evaluate(() => document.getElementById("widget").dataset.error);
      assert.match(error, expected);
      // The first tier keeps answering without the model.
      await clickProducts(page, 1, 5, { ready: false });
      assert.equal(await page.evaluate(() => document.getElementById("widget").dataset.tier), "0");
      const cached = await page.evaluate(async (f) => {
        const cache = await caches.open("l2d-v1");
        return (await cache.keys()).map((r) => r.url).filter((u) => u.endsWith(f)).length;
      }, file);
      assert.equal(cached, 0, `${file} was cached after a failed download`);
      await page.unroute(pattern);
      await page.reload();
      await clickProducts(page, 1);
      await context.close();
    }
  });

  await test("a full storage quota: recommendations still work, nothing partial is cached, and caching resumes with room", async () => {
    const context = await gpuBrowser.newContext();
    const page = await context.newPage();
    const cdp = await context.newCDPSession(page);
    // 1 MB for the whole origin: the 4 MB weights and memory blob cannot be stored.
    await cdp.send("Storage.overrideQuotaForOrigin", { origin: base, quotaSize: 1_000_000 });
    await page.goto(`${base}/www/shop.html`);
    await clickProducts(page, 2);
    const cachedSizes = () =>
      page.evaluate(async () => {
        const cache = await caches.open("l2d-v1");
        const out = {};
        for (const request of await cache.keys()) {
          const body = await (await cache.match(request)).arrayBuffer();
          out[new URL(request.url).pathname.split("/").pop()] = body.byteLength;
        }
        return out;
      });
    const squeezed = await cachedSizes();
    console.log("     cached under the quota:", JSON.stringify(squeezed));
    for (const big of [WEIGHTS, "memory.blob"]) {
      assert.ok(!(big in squeezed), `${big} was cached beyond the quota`);
    }
    for (const [file, size] of Object.entries(squeezed)) {
      assert.equal(size, readFileSync(`${ROOT}models/default/${file}`).length, `${file} cached partially`);
    }
    // With room again, the next visit downloads and caches everything in full.
    await cdp.send("Storage.overrideQuotaForOrigin", { origin: base });
    await page.reload();
    await clickProducts(page, 1);
    const roomy = await cachedSizes();
    for (const file of [WEIGHTS, "memory.blob", "tokenizer.json", "config.json"]) {
      assert.equal(roomy[file], readFileSync(`${ROOT}models/default/${file}`).length, `${file} not cached in full`);
    }
    await context.close();
  });

  await test("a blob built for another model is refused even when the manifest vouches for it", async () => {
    const blob = Buffer.from(readFileSync(`${ROOT}models/default/memory.blob`));
    blob[32] ^= 0xff; // the model fingerprint lives at offset 32 (outside the payload checksum)
    const manifest = JSON.parse(readFileSync(`${ROOT}models/default/manifest.json`, "utf8"));
    manifest.files["memory.blob"].sha256 = createHash("sha256").update(blob).digest("hex");
    const context = await gpuBrowser.newContext();
    const page = await context.newPage();
    await page.route("**/models/default/manifest.json", (route) => route.fulfill({ body: JSON.stringify(manifest), contentType: "application/json" }));
    await page.route("**/models/default/memory.blob", (route) => route.fulfill({ body: blob }));
    await page.goto(`${base}/www/shop.html`);
    await page.waitForFunction(() => document.getElementById("widget")?.dataset.state === "error", null, { timeout: 60000 });
    assert.match(await page.evaluate(() => document.getElementById("widget").dataset.error), /built for another model/);
    await context.close();
  });

  await test("after l2d update: the second visit fetches only the changed files, caches no stale copy, and the widget recommends the new item", async () => {
    // target/pages/update/{v1,v2}: one deployed folder before and after `l2d update`
    // (scripts/build-update-fixture.sh), served under /models/update/ in turn.
    const dir = `${ROOT}target/pages/update`;
    const manifests = ["v1", "v2"].map((v) => JSON.parse(readFileSync(`${dir}/${v}/manifest.json`, "utf8")));
    const changed = Object.keys(manifests[1].files).filter((f) => manifests[0].files[f]?.sha256 !== manifests[1].files[f].sha256);
    // The update rewrites the blobs and, with a new item, the items parts (new content, new names).
    const fixed = (names) => names.map((n) => (/^items-.*\.jsonl$/.test(n) ? "items part" : n)).sort();
    assert.deepEqual(fixed(changed), ["follows.bin", "global.blob", "items part", "memory.blob"], "the update rewrites the blobs, the follows file and items only");
    let version = "v1";
    const fetched = [];
    const context = await gpuBrowser.newContext();
    await context.route((u) => u.pathname.startsWith("/models/update/"), (route) => {
      const name = new URL(route.request().url()).pathname.split("/").pop();
      fetched.push(name);
      try {
        route.fulfill({ body: readFileSync(`${dir}/${version}/${name}`) });
      } catch {
        route.fulfill({ status: 404, body: "" });
      }
    });
    const page = await context.newPage();
    const url = `${base}/www/shop.html?manifest=/models/update/manifest.json`;
    await page.goto(url);
    await page.waitForSelector("#widget[data-state=ready]", { timeout: 120000 });
    const NEW = "900001";
    assert.equal(await page.$(`.product[data-id="${NEW}"]`), null, "v1 has no new item");
    assert.ok(fetched.includes(weightsFile(manifests[0])), `first visit fetched ${fetched}`);
    version = "v2";
    fetched.length = 0;
    await page.reload();
    await page.waitForSelector("#widget[data-state=ready]", { timeout: 120000 });
    // (The manifest is read by the first tier and by the worker.)
    assert.deepEqual([...new Set(fixed(fetched))], ["follows.bin", "items part", "manifest.json", "memory.blob"], `second visit fetched ${fetched}`);
    // The cache holds v2's blob, not v1's.
    const cached = await page.evaluate(async () => {
      const cache = await caches.open("l2d-v1");
      const hit = await cache.match(new URL("/models/update/memory.blob", location.href).href);
      const bytes = new Uint8Array(await hit.arrayBuffer());
      const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
      return Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
    });
    assert.equal(cached, manifests[1].files["memory.blob"].sha256);
    assert.ok(await page.$(`.product[data-id="${NEW}"]`), "v2's catalog lists the new item");
    // A shopper who viewed what a fixture user viewed last before the new film: the film
    // followed that history in the update (its memory states and follow weights).
    const samples = readFileSync(`${dir}/data/train.jsonl`, "utf8").trim().split("\n").map((l) => JSON.parse(l));
    const before = samples.find((s) => s.target === NEW).history.slice(-2);
    const titles = new Map(readFileSync(`${dir}/data/catalog.jsonl`, "utf8").trim().split("\n").map((l) => JSON.parse(l)).map((c) => [c.id, c.title]));
    const lists = [];
    for (const id of before) {
      await page.fill("#search", titles.get(id).slice(0, 12));
      await (await page.waitForSelector(`.product[data-id="${id}"]`)).click();
      lists.push(await waitForItems(page, lists.at(-1)?.join(",") ?? null));
    }
    assert.ok(lists.some((l) => l.includes(NEW)), `the new item is recommended after ${before}: ${JSON.stringify(lists)}`);
    await context.close();
  });

  await test("l2d build: the widget recommends from the built site; a rebuild's changed files replace the old ones in the cache", async () => {
    const dir = `${ROOT}target/pages/build`;
    rmSync(dir, { recursive: true, force: true });
    writeRawLog(dir, 300);
    const first = l2dBuild(dir);
    const context = await gpuBrowser.newContext();
    const fetched = await routeDir(context, "/models/build/", () => `${dir}/out/site`);
    const page = await context.newPage();
    await page.goto(`${base}/www/shop.html?manifest=/models/build/manifest.json`);
    const { ids, lists } = await clickProducts(page, 2);
    const catalog = new Set(Array.from({ length: 30 }, (_, i) => String(i + 1)));
    // List i follows click i: it holds catalog items and none of the items clicked so far.
    assert.ok(lists.every((l, i) => l.length > 0 && l.every((id) => catalog.has(id) && !ids.slice(0, i + 1).includes(id))), JSON.stringify({ ids, lists }));
    // What the widget fetches (and caches): the model files, the memory blob and the items parts.
    const served = (m) => ["config.json", weightsFile(m), "tokenizer.json", "l2d.json", "memory.blob", ...(m.follows ? [m.follows] : [])];
    const paths = (m) => [...served(m), ...m.items].map((n) => `/models/build/${m.files[n].path}`).sort();
    assert.deepEqual(await cachedUrls(page, "/models/build/"), paths(first));
    // Another training seed: new weights and blobs under new names; the tokenizer is kept.
    const second = l2dBuild(dir, ["--seed", "6"]);
    assert.notEqual(second.files[weightsFile(second)].path, first.files[weightsFile(first)].path);
    assert.equal(second.files["tokenizer.json"].path, first.files["tokenizer.json"].path);
    fetched.length = 0;
    await page.reload();
    await page.waitForSelector("#widget[data-state=ready]", { timeout: 120000 });
    const changed = [...served(second), ...second.items].filter((n) => first.files[n]?.path !== second.files[n].path).map((n) => second.files[n].path);
    assert.ok(changed.length >= 2, `changed: ${changed}`);
    assert.deepEqual(fetched.filter((n) => n !== "manifest.json").sort(), changed.sort(), `second visit fetched ${fetched}`);
    assert.deepEqual(await cachedUrls(page, "/models/build/"), paths(second), "no stale file stays cached");
    await waitForItems(page);
    await context.close();
  });

  await test("npm pack: a scratch page installs the tarball and shows recommendations", async () => {
    const pkg = JSON.parse(readFileSync(`${ROOT}www/npm-package.json`, "utf8"));
    const version = readFileSync(`${ROOT}Cargo.toml`, "utf8").match(/^version = "(.*)"/m)[1];
    const tarball = `${ROOT}target/npm/l2d-${version}.tgz`;
    const dir = `${ROOT}target/pages/scratch`;
    rmSync(dir, { recursive: true, force: true });
    mkdirSync(dir, { recursive: true });
    writeFileSync(`${dir}/package.json`, JSON.stringify({ name: "scratch-shop", private: true }));
    const install = spawnSync("npm", ["install", "--offline", "--no-audit", "--no-fund", tarball], { cwd: dir, encoding: "utf8" });
    assert.equal(install.status, 0, install.stderr);
    const installed = `${dir}/node_modules/l2d`;
    const manifest = JSON.parse(readFileSync(`${installed}/package.json`, "utf8"));
    assert.equal(manifest.version, version);
    for (const [entry, target] of Object.entries(pkg.exports)) {
      for (const file of typeof target === "string" ? [target] : Object.values(target)) {
        readFileSync(`${installed}/${file}`); // every export and its types are in the tarball
      }
      assert.ok(entry === "." || entry.startsWith("./"), entry);
    }
    // A page that knows only the package's export names (an import map, as a bundler would resolve them).
    writeFileSync(`${dir}/index.html`, `<!doctype html><meta charset="utf-8"><title>scratch</title><link rel="icon" href="data:,">
<script type="importmap">{"imports": {"l2d": "./node_modules/l2d/${pkg.exports["."].default.slice(2)}", "l2d/widget": "./node_modules/l2d/${pkg.exports["./widget"].default.slice(2)}"}}</script>
<script type="module">
  import { L2DClient } from "l2d";
  import { history } from "l2d/widget";
  history.clear();
  const client = new L2DClient();
  await client.load({ manifestUrl: "/models/default/manifest.json", cacheName: null });
  const items = await client.items();
  history.record(items[3].id);
  history.record(items[5].id);
  const shown = document.createElement("l2d-recommendations");
  shown.id = "widget";
  shown.setAttribute("manifest", "/models/default/manifest.json");
  document.body.append(shown);
  const direct = await client.recommend(history.get(), { k: 5 });
  document.body.dataset.direct = direct.items.map((i) => i.id).join(",");
</script>`);
    const context = await gpuBrowser.newContext();
    const errors = [];
    await routeDir(context, "/scratch/", () => dir);
    const page = await context.newPage();
    page.on("pageerror", (e) => errors.push(e.message));
    page.on("console", (m) => m.type() === "error" && errors.push(m.text()));
    await page.goto(`${base}/scratch/index.html`);
    await page.waitForFunction(() => document.body.dataset.direct, null, { timeout: 120000 });
    const direct = (await page.evaluate(() => document.body.dataset.direct)).split(",");
    assert.equal(direct.length, 5);
    const widget = await waitForItems(page);
    assert.ok(widget.length > 0, "the widget shows recommendations");
    assert.deepEqual(errors, []);
    await context.close();
  });

  await gpuBrowser.close();
  for (const s of servers) s.kill();
  const failed = results.filter(([, r]) => r !== "ok");
  console.log(`${results.length - failed.length} passed, ${failed.length} failed`);
  process.exit(failed.length ? 1 : 0);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
