// The storefront in every browser engine a shop's visitors use: Chromium (puppeteer-core over
// CDP), Firefox (Debian's firefox-esr, puppeteer-core over WebDriver BiDi) and WebKit, Safari's
// engine (WebKitGTK's MiniBrowser through WebKitWebDriver under xvfb-run). The same cases in each,
// driven through one small interface (open a page, run a function in it, wait for a condition),
// and seen from the server where a driver has no events: the server records every request
// (--request-log) and every Content-Security-Policy violation report (--csp-reports), workers
// included. Writes the support matrix to target/support-matrix.md.
//   node tests/engines.mjs [--engines chromium,firefox,webkit]
// Run by scripts/test.sh after scripts/build-web.sh; tests/pages.mjs holds the Chromium-only
// cases (they need request interception, see NOT_RUN below).
import puppeteer from "puppeteer-core";
import { spawn } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import assert from "node:assert/strict";
import { assertStyled, widgetStyle } from "./storefront.mjs";

const ROOT = new URL("..", import.meta.url).pathname;
const arg = (name, fallback) => (process.argv.includes(name) ? process.argv[process.argv.indexOf(name) + 1] : fallback);
const ENGINES = arg("--engines", "chromium,firefox,webkit").split(",");
const PORT = Number(arg("--port", "8791"));
const BASE = `http://127.0.0.1:${PORT}`;
const LOGS = `${ROOT}target/engines`;
const REQUESTS = `${LOGS}/requests.log`;
const REPORTS = `${LOGS}/csp-reports.log`;
const TIMEOUT = 300_000;
const CHROMIUM_FLAGS = ["--no-sandbox", "--disable-dev-shm-usage", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"];

// Cases of tests/pages.mjs this file does not run, and why: they replace or watch responses from
// inside the browser (Playwright's request routing, Chromium only here) or need Chromium's
// WebGPU adapter.
const NOT_RUN = [
  ["a second visit from the Cache API, in WebKit", "WebKitWebDriver's sessions keep their data in memory: the first visit's entries are there (caches.keys() lists all six files), yet the second visit of the same session downloads the model, blob, tokenizer and items again; whether Safari with a persistent profile keeps them cannot be tested here"],
  ["download faults, full storage quota, blob of another model", "inject faults by rewriting responses in the browser (request routing is Chromium-only in our drivers)"],
  ["CDN layout, gzip CDN, l2d update, l2d build, npm pack", "route a second origin or a scratch directory through the browser's request interception"],
  ["WebGPU scoring", "Firefox ESR and WebKitGTK expose no WebGPU; they take the CPU path, whose ranking is the one tested"],
];

// How long a visitor stays on the first page before the second visit.
const SETTLE_MS = 2000;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const readLines = (path) => (existsSync(path) ? readFileSync(path, "utf8").split("\n").filter(Boolean) : []);

function serve() {
  mkdirSync(LOGS, { recursive: true });
  writeFileSync(REQUESTS, "");
  writeFileSync(REPORTS, "");
  const child = spawn("python3", [`${ROOT}scripts/serve.py`, "--port", String(PORT), "--quiet", "--gzip", "--request-log", REQUESTS, "--csp-reports", REPORTS], { stdio: ["ignore", "pipe", "inherit"] });
  return new Promise((resolve, reject) => {
    child.stdout.once("data", () => resolve(child));
    child.once("exit", (code) => reject(new Error(`server exited with ${code}`)));
  });
}

// One browser session. `run(fn, ...args)` calls `fn` (a function, serialized) in the page and
// resolves to its (awaited) JSON result.
class Puppeteer {
  static async start(engine) {
    const options =
      engine === "firefox"
        ? { browser: "firefox", executablePath: "/usr/bin/firefox-esr", headless: true }
        : { browser: "chrome", executablePath: "/usr/bin/chromium", headless: true, args: CHROMIUM_FLAGS };
    const self = new Puppeteer();
    self.browser = await puppeteer.launch(options);
    self.page = await self.browser.newPage();
    self.console = [];
    self.page.on("console", (m) => self.console.push(m.text()));
    self.page.on("pageerror", (e) => self.console.push(`pageerror: ${e.message}`));
    self.version = await self.browser.version();
    return self;
  }
  async open(url) {
    await this.page.goto(url);
  }
  async run(fn, ...args) {
    return this.page.evaluate(fn, ...args);
  }
  async close() {
    await this.browser.close();
  }
}

class WebKit {
  static async start() {
    const self = new WebKit();
    self.port = PORT + 100 + Math.floor(Math.random() * 100);
    self.driver = spawn("xvfb-run", ["-a", "/usr/bin/WebKitWebDriver", `--port=${self.port}`], { stdio: "ignore", detached: true });
    for (let i = 0; ; i++) {
      try {
        await fetch(`http://127.0.0.1:${self.port}/status`);
        break;
      } catch (e) {
        if (i > 100) throw new Error("WebKitWebDriver did not start");
        await sleep(200);
      }
    }
    const session = await self.call("POST", "/session", {
      capabilities: { alwaysMatch: { browserName: "MiniBrowser", "webkitgtk:browserOptions": { binary: "/usr/lib/x86_64-linux-gnu/webkit2gtk-4.1/MiniBrowser", args: ["--automation"] } } },
    });
    self.session = session.sessionId;
    self.version = `MiniBrowser/WebKitGTK ${session.capabilities.browserVersion}`;
    self.console = [];
    return self;
  }
  async call(method, path, body) {
    const response = await fetch(`http://127.0.0.1:${this.port}${path}`, {
      method,
      headers: { "content-type": "application/json" },
      body: body ? JSON.stringify(body) : undefined,
    });
    const json = await response.json();
    if (json.value && json.value.error) throw new Error(`WebDriver ${path}: ${json.value.error}: ${json.value.message}`);
    return json.value;
  }
  async open(url) {
    await this.call("POST", `/session/${this.session}/url`, { url });
  }
  async run(fn, ...args) {
    const script = `const done = arguments[arguments.length - 1];
      Promise.resolve().then(() => (${fn.toString()})(...Array.from(arguments).slice(0, -1)))
        .then((value) => done({ value }), (e) => done({ error: String(e && e.stack || e) }));`;
    const out = await this.call("POST", `/session/${this.session}/execute/async`, { script, args });
    if (out.error) throw new Error(out.error);
    return out.value;
  }
  async close() {
    try {
      await this.call("DELETE", `/session/${this.session}`);
    } finally {
      try {
        process.kill(-this.driver.pid);
      } catch (_) {}
    }
  }
}

const start = (engine) => (engine === "webkit" ? WebKit.start() : Puppeteer.start(engine));

async function waitFor(session, fn, arg, what, timeout = TIMEOUT) {
  const until = Date.now() + timeout;
  for (;;) {
    const value = await session.run(fn, arg);
    if (value) return value;
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await sleep(250);
  }
}

// Clicks `n` product cards from index `first` on the storefront once the widget's model tier is
// ready, waiting after each for the widget's list to change; returns the clicked ids and each list.
async function clickProducts(session, n, first, { model = true } = {}) {
  await waitFor(session, () => document.body.dataset.ready, null, "the products");
  assert.equal(await session.run(() => document.body.dataset.ready), "products");
  if (model) await waitFor(session, () => document.getElementById("widget").dataset.state === "ready", null, "the model tier");
  const ids = [];
  const lists = [];
  let previous = await session.run(() => document.getElementById("widget").dataset.items || "");
  for (let i = first; i < first + n; i++) {
    ids.push(await session.run((i) => {
      const card = document.querySelectorAll(".product")[i];
      card.click();
      return card.dataset.id;
    }, i));
    previous = await waitFor(
      session,
      (prev) => {
        const items = document.getElementById("widget").dataset.items;
        return items && items !== prev ? items : null;
      },
      previous,
      `recommendations after clicking product ${i}`,
    );
    lists.push(previous.split(","));
  }
  return { ids, lists };
}

// Violation reports the server received since `from` (report-uri posts arrive asynchronously).
async function newReports(from) {
  await sleep(1500);
  return readLines(REPORTS).slice(from);
}

const results = new Map(); // engine → { version, build, webgpu, cases: [[name, outcome]] }

async function engineCases(engine) {
  const record = { version: "?", build: "?", webgpu: "?", cases: [] };
  results.set(engine, record);
  const test = async (name, body, { skip = [] } = {}) => {
    if (skip.includes(engine)) {
      record.cases.push([name, "not run"]);
      console.log(`not run in ${engine}: ${name} (see the list below the matrix)`);
      return;
    }
    const from = readLines(REPORTS).length;
    const started = Date.now();
    try {
      await body();
      const reports = await newReports(from);
      assert.deepEqual(reports, [], "Content-Security-Policy violation reports");
      record.cases.push([name, "ok"]);
      console.log(`ok   ${engine}: ${name} (${((Date.now() - started) / 1000).toFixed(1)} s)`);
    } catch (e) {
      record.cases.push([name, "FAILED"]);
      console.log(`FAIL ${engine}: ${name}: ${e.stack || e}`);
    }
  };

  await test("storefront: three clicks change the recommendations, exclude the clicked items, and the widget is styled under style-src 'self'", async () => {
    const session = await start(engine);
    try {
      record.version = session.version;
      await session.open(`${BASE}/www/shop.html`);
      const { ids, lists } = await clickProducts(session, 3, 3);
      for (const list of lists) assert.equal(list.length, 8, `8 items, got ${list}`);
      for (const id of ids) assert.ok(!lists[2].includes(id), `clicked ${id} recommended`);
      assert.notDeepEqual(lists[0], lists[2], "recommendations change with the history");
      assert.deepEqual(await session.run(() => JSON.parse(localStorage.getItem("l2d-history"))), ids);
      assertStyled(await session.run(widgetStyle));
      const probe = await session.run(async () => ({
        build: (await import("/www/l2d-simd.js")).wasmBuild(),
        webgpu: "gpu" in navigator && !!(await navigator.gpu.requestAdapter().catch(() => null)),
      }));
      record.build = probe.build;
      record.webgpu = probe.webgpu ? "yes" : "no (CPU)";
      const errors = session.console.filter((m) => /pageerror|Content[- ]Security[- ]Policy/i.test(m));
      assert.deepEqual(errors, []);
    } finally {
      await session.close();
    }
  });

  await test("the first tier: its JavaScript ranks as the Rust build on the parity fixture, and answers clicks with no model fetched", async () => {
    const session = await start(engine);
    const from = readLines(REQUESTS).length;
    try {
      await session.open(`${BASE}/www/shop.html?model=never`);
      const fixture = JSON.parse(readFileSync(`${ROOT}tests/fixtures/native_results.json`, "utf8")).map((c) => ({ history: c.history, follows: c.follows }));
      const got = await session.run(async (cases) => {
        const { loadFollowsTier } = await import("/www/l2d-follows.js");
        const tier = await loadFollowsTier(new URL("/models/default/manifest.json", location.href).href);
        return cases.map((c) => tier.recommend(c.history, 20, true).map((item) => item.id));
      }, fixture);
      assert.deepEqual(got, fixture.map((c) => c.follows), "the first tier's rankings in this engine");
      const { lists } = await clickProducts(session, 2, 3, { model: false });
      for (const list of lists) assert.equal(list.length, 8, `8 items, got ${list}`);
      assert.equal(await session.run(() => document.getElementById("widget").dataset.tier), "0");
      const heavy = readLines(REQUESTS).slice(from).filter((l) => /safetensors|\.blob|\.wasm|tokenizer\.json/.test(l));
      assert.deepEqual(heavy, [], "the model tier was fetched");
    } finally {
      await session.close();
    }
  });

  await test("privacy: two different histories make the same requests", async () => {
    const visit = async (first) => {
      const from = readLines(REQUESTS).length;
      const session = await start(engine);
      try {
        await session.open(`${BASE}/www/shop.html`);
        const { ids, lists } = await clickProducts(session, 3, first);
        await sleep(500);
        return { ids, lists, requests: readLines(REQUESTS).slice(from).filter((l) => !l.includes("__csp-report")) };
      } finally {
        await session.close();
      }
    };
    const [a, b] = [await visit(3), await visit(20)];
    assert.notDeepEqual(a.ids, b.ids);
    assert.notDeepEqual(a.lists.at(-1), b.lists.at(-1), "the histories got different recommendations");
    const data = (r) => r.filter((line) => line.includes("/models/"));
    assert.ok(data(a.requests).length > 0, "the model files were fetched");
    assert.deepEqual(data(a.requests), data(b.requests));
    assert.deepEqual([...a.requests].sort(), [...b.requests].sort());
    for (const line of [...a.requests, ...b.requests]) assert.match(line, /^GET /, line);
  });

  await test("a second visit reads the model, blob and items from the Cache API", async () => {
    const session = await start(engine);
    try {
      await session.open(`${BASE}/www/shop.html`);
      await clickProducts(session, 1, 3);
      await sleep(SETTLE_MS);
      const from = readLines(REQUESTS).length;
      await session.open(`${BASE}/www/shop.html`);
      // The stored history is recommended for again, from the cached files.
      await waitFor(session, () => document.getElementById("widget").dataset.tier === "1", null, "the model's recommendations on the second visit");
      await sleep(500);
      const heavy = readLines(REQUESTS)
        .slice(from)
        .filter((l) => /safetensors|\.blob|tokenizer\.json|items-.*\.jsonl/.test(l));
      assert.deepEqual(heavy, [], "re-downloaded on the second visit");
    } finally {
      await session.close();
    }
  }, { skip: ["webkit"] });

  await test("a widget that cannot load hides its list and, in debug mode, says why", async () => {
    const session = await start(engine);
    try {
      await session.open(`${BASE}/www/shop.html`);
      await waitFor(session, () => document.body.dataset.ready, null, "the products");
      await session.run(() => {
        for (const debug of [false, true]) {
          const widget = document.createElement("l2d-recommendations");
          widget.id = debug ? "broken-debug" : "broken";
          widget.setAttribute("manifest", "/models/missing/manifest.json");
          if (debug) widget.setAttribute("debug", "");
          document.body.append(widget);
        }
      });
      const shown = await waitFor(
        session,
        () => {
          const read = (id) => {
            const w = document.getElementById(id);
            if (w.dataset.state !== "error") return null;
            const root = w.shadowRoot;
            return { status: root.querySelector(".status").textContent, items: root.querySelectorAll("li").length, error: w.dataset.error };
          };
          const [plain, debug] = [read("broken"), read("broken-debug")];
          return plain && debug ? { plain, debug } : null;
        },
        null,
        "the broken widgets' error state",
        60_000,
      );
      assert.equal(shown.plain.status, "Recommendations are unavailable right now.");
      assert.equal(shown.plain.items, 0);
      assert.ok(shown.debug.status.startsWith("Recommendations are unavailable: "), shown.debug.status);
      assert.ok(shown.debug.status.includes(shown.debug.error) && shown.debug.error.length > 0, JSON.stringify(shown));
      assert.equal(shown.debug.items, 0);
    } finally {
      await session.close();
    }
  });

  await test("the paper demo and the bench page run under the CSP", async () => {
    const session = await start(engine);
    try {
      for (const page of ["index.html", "bench.html"]) {
        await session.open(`${BASE}/www/${page}`);
        await waitFor(session, () => document.readyState === "complete", null, `${page} loaded`);
        await sleep(3000);
      }
      const errors = session.console.filter((m) => /pageerror|Content[- ]Security[- ]Policy/i.test(m));
      assert.deepEqual(errors, []);
    } finally {
      await session.close();
    }
  });
}

function matrix() {
  const lines = [
    "| engine | version | wasm build | WebGPU | cases passed |",
    "|---|---|---|---|---|",
  ];
  for (const [engine, r] of results) {
    const passed = r.cases.filter(([, o]) => o === "ok").length;
    const run = r.cases.filter(([, o]) => o !== "not run").length;
    const skipped = r.cases.length - run;
    lines.push(`| ${engine} | ${r.version} | ${r.build} | ${r.webgpu} | ${passed} / ${run}${skipped ? ` (${skipped} not run, below)` : ""} |`);
  }
  lines.push("", "Not run (the cases of tests/pages.mjs run in Chromium):", "");
  for (const [what, why] of NOT_RUN) lines.push(`- ${what}: ${why}.`);
  return lines.join("\n") + "\n";
}

async function main() {
  const server = await serve();
  try {
    for (const engine of ENGINES) await engineCases(engine);
  } finally {
    server.kill();
  }
  const table = matrix();
  writeFileSync(`${ROOT}target/support-matrix.md`, table);
  console.log(`\n${table}`);
  const cases = [...results.values()].flatMap((r) => r.cases);
  const failed = cases.filter(([, o]) => o === "FAILED");
  const notRun = cases.filter(([, o]) => o === "not run").length;
  console.log(`${cases.length - failed.length - notRun} passed, ${failed.length} failed, ${notRun} not run (listed)`);
  process.exit(failed.length ? 1 : 0);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
