// Browser benchmark page: prints a JSON report into #out (read by scripts/bench-browser.mjs).
// `recommend` in the worker for fresh 10-item histories (a different one each round, so no
// round reuses another's prompt) and for histories grown by one item (the previous prompt's
// key/value cache reused), per backend and mode; then what a shopper feels: a history change
// → the widget's list re-rendered (next frame included), fresh and grown by one; the beam
// baseline.
import { L2DClient } from "./l2d-client.js";
import { history } from "./l2d-widget.js";

const ROUNDS = 30;
const WINDOW = 10;

function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}
function p90(xs) {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.round((s.length - 1) * 0.9))];
}

// Seeded distinct histories of WINDOW + 1 catalog ids (the last one is the "click").
function histories(ids, n) {
  let state = 7;
  const next = () => (state = (state * 1103515245 + 12345) % 2147483648);
  return Array.from({ length: n }, () => Array.from({ length: WINDOW + 1 }, () => ids[next() % ids.length]));
}

const frame = () => new Promise((resolve) => requestAnimationFrame(() => resolve()));

// Time from `change()` to the widget's next rendered list, plus the frame that shows it.
// `delayMs` first waits that long after a frame starts: called back to back, every change would
// come right after a frame starts and anything shorter than a frame would read as one whole frame.
async function felt(widget, change, delayMs = 0) {
  if (delayMs > 0) {
    await frame();
    await new Promise((resolve) => setTimeout(resolve, delayMs));
  }
  const rendered = new Promise((resolve) => widget.addEventListener("l2d-recommendations", resolve, { once: true }));
  const start = performance.now();
  change();
  await rendered;
  const renderedMs = performance.now() - start;
  await frame();
  return { shownMs: performance.now() - start, renderedMs };
}

// A frame's duration here: the median gap between consecutive animation frames.
async function frameMs() {
  const gaps = [];
  let last = await new Promise((resolve) => requestAnimationFrame(resolve));
  for (let i = 0; i < 20; i++) {
    const now = await new Promise((resolve) => requestAnimationFrame(resolve));
    gaps.push(now - last);
    last = now;
  }
  return median(gaps);
}

function setHistory(ids) {
  localStorage.setItem("l2d-history", JSON.stringify(ids));
  window.dispatchEvent(new CustomEvent("l2d-history-change"));
}

// A soak (bench.html?soak=N): N recommendations over random histories, fresh and grown by one
// mixed; wasm memory after the first 100 and at the end, p99 of the first and last thousand.
async function soak(client, ids, n) {
  let state = 11;
  const next = () => (state = (state * 1103515245 + 12345) % 2147483648);
  const times = [];
  let history = [];
  let errors = 0;
  let after100 = 0;
  for (let i = 0; i < n; i++) {
    if (history.length >= WINDOW || next() % 3 === 0) history = Array.from({ length: 1 + (next() % WINDOW) }, () => ids[next() % ids.length]);
    else history = history.concat([ids[next() % ids.length]]);
    const start = performance.now();
    try {
      await client.recommend(history, { k: 20 });
    } catch (_) {
      errors += 1;
    }
    times.push(performance.now() - start);
    if (i === 99) after100 = (await client.info()).wasmMemoryBytes;
  }
  const end = (await client.info()).wasmMemoryBytes;
  const p99 = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length * 0.99)];
  const first = times.slice(0, 1000);
  const last = times.slice(-1000);
  return {
    recommendations: n,
    errors,
    wasmMemoryAfter100: after100,
    wasmMemoryAtEnd: end,
    memoryRatio: end / after100,
    p99FirstThousandMs: p99(first),
    p99LastThousandMs: p99(last),
    p99Ratio: p99(last) / p99(first),
    medianMs: median(times),
  };
}

// A catalog-size sweep (bench.html?catalog=10000,100000,1000000): for each size, the synthetic
// L2D-G catalog in target/synth/cN/ (written by scripts/bench-browser.mjs with `l2d synth`)
// loaded without the Cache API; L2D-G on the CPU: scoring + top-20 per fresh history (p50/p90),
// load time, wasm memory after the load next to blob + model bytes; where WebGPU exists, its
// top-20 against the CPU's on the same histories.
async function catalogSweep(sizes) {
  const out = [];
  for (const size of sizes) {
    const manifestUrl = new URL(`../target/synth/c${size}/manifest.json`, location.href).href;
    const manifest = await (await fetch(manifestUrl)).json();
    const bytes = (name) => manifest.files[name].bytes;
    const client = new L2DClient();
    const t0 = performance.now();
    await client.load({ manifestUrl, cacheName: null, blob: "global" });
    const row = {
      items: size,
      loadMs: performance.now() - t0,
      blobBytes: bytes("global.blob"),
      itemsBytes: manifest.items.reduce((a, name) => a + bytes(name), 0),
    };
    const info = await client.info();
    // The weights file the page fetched, as the recommender names it.
    row.modelBytes = bytes(info.weightsFile) + bytes("tokenizer.json") + bytes("config.json") + bytes("l2d.json");
    row.wasmMemoryBytes = info.wasmMemoryBytes;
    row.wasmMemoryOverBlobAndModel = row.wasmMemoryBytes / (row.blobBytes + row.itemsBytes + row.modelBytes);
    const ids = (await client.items()).map((i) => i.id);
    const runs = histories(ids, ROUNDS + 1);
    const options = { k: 20, backend: "cpu", mode: "global" };
    await client.recommend(runs[0].slice(0, WINDOW), options);
    const score = [];
    const total = [];
    const cpuTop = [];
    for (const h of runs.slice(1)) {
      const start = performance.now();
      const r = await client.recommend(h.slice(0, WINDOW), options);
      total.push(performance.now() - start);
      score.push(r.scoreMs);
      cpuTop.push(r.items);
    }
    row.scoreP50Ms = median(score);
    row.scoreP90Ms = p90(score);
    row.recommendP50Ms = median(total);
    if (await client.hasWebGPU()) {
      let same = 0;
      let nearTies = 0;
      const gpuScore = [];
      const wasmMemoryBytesBefore = (await client.info()).wasmMemoryBytes;
      // The first call uploads the rows; the rest are timed.
      await client.recommend(runs[0].slice(0, WINDOW), { ...options, backend: "webgpu" });
      for (const [i, h] of runs.slice(1, 11).entries()) {
        const g = await client.recommend(h.slice(0, WINDOW), { ...options, backend: "webgpu" });
        gpuScore.push(g.scoreMs);
        const a = cpuTop[i];
        if (a.every((item, j) => item.id === g.items[j].id)) same += 1;
        // Otherwise every differing position must be a near-tie (f32 summation order).
        else if (a.every((item, j) => item.id === g.items[j].id || Math.abs(item.distance - g.items[j].distance) <= 1e-3 * Math.max(1, item.distance))) nearTies += 1;
      }
      // Scoring on the GPU (selection on the GPU, candidates read back) and wasm memory
      // once its rows are uploaded (they stay in their stored type: no f32 copy).
      row.webgpu = {
        histories: 10,
        identicalTop20: same,
        nearTieOnly: nearTies,
        scoreP50Ms: median(gpuScore),
        wasmMemoryBytesBefore,
        wasmMemoryBytesAfter: (await client.info()).wasmMemoryBytes,
      };
    }
    client.terminate();
    out.push(row);
  }
  return out;
}

async function main() {
  const params = new URLSearchParams(location.search);
  if (params.get("catalog")) {
    const report = { catalog: await catalogSweep(params.get("catalog").split(",").map(Number)) };
    document.getElementById("out").textContent = JSON.stringify(report, null, 2);
    document.body.dataset.done = "1";
    return;
  }
  // ?manifest= another deployed folder's manifest (scripts/bench-browser.mjs --model DIR).
  const manifestUrl = new URL(params.get("manifest") ?? "../models/default/manifest.json", location.href).href;
  const report = { window: WINDOW, rounds: ROUNDS, manifest: manifestUrl };
  const t0 = performance.now();
  const client = new L2DClient();
  let cachedFiles = 0;
  await client.load({ manifestUrl }, (p) => {
    if (p.cached) cachedFiles += p.loaded === p.total ? 1 : 0;
  });
  const ids = (await client.items()).map((i) => i.id);
  const soakRounds = Number(params.get("soak"));
  if (soakRounds > 0) {
    report.soak = await soak(client, ids, soakRounds);
    document.getElementById("out").textContent = JSON.stringify(report, null, 2);
    document.body.dataset.done = "1";
    return;
  }
  const runs = histories(ids, ROUNDS + 1);
  await client.recommend(runs[0].slice(0, WINDOW), { k: 20, backend: "cpu" });
  report.loadToFirstMs = performance.now() - t0;
  report.visit = cachedFiles > 0 ? "warm (Cache API)" : "cold (network)";
  report.hasWebGPU = await client.hasWebGPU();
  report.simd = (await client.info()).simd;
  for (const backend of report.hasWebGPU ? ["cpu", "webgpu"] : ["cpu"]) {
    for (const mode of ["default", "global", "local"]) {
      const options = { k: 20, backend, ...(mode === "default" ? {} : { mode }) };
      await client.recommend(runs[0].slice(0, WINDOW), options); // warm-up
      const fresh = { total: [], encode: [], score: [] };
      const grown = { total: [], encode: [] };
      for (const h of runs.slice(1)) {
        let start = performance.now();
        const r = await client.recommend(h.slice(1, WINDOW + 1), options);
        fresh.total.push(performance.now() - start);
        fresh.encode.push(r.encodeMs);
        fresh.score.push(r.scoreMs);
        await client.recommend(h.slice(0, WINDOW - 1), options);
        start = performance.now();
        const g = await client.recommend(h.slice(0, WINDOW), options);
        grown.total.push(performance.now() - start);
        grown.encode.push(g.encodeMs);
      }
      report[`${backend}/${mode}`] = {
        freshMedianMs: median(fresh.total),
        freshEncodeMs: median(fresh.encode),
        scoreMs: median(fresh.score),
        grownByOneMedianMs: median(grown.total),
        grownByOneEncodeMs: median(grown.encode),
      };
    }
  }
  // What a shopper feels: the widget (the manifest's default scoring, backend auto).
  history.clear();
  const widget = document.createElement("l2d-recommendations");
  widget.setAttribute("manifest", manifestUrl);
  widget.setAttribute("k", "8");
  document.body.append(widget);
  await felt(widget, () => setHistory(runs[0].slice(0, WINDOW)));
  // Each change either right after a frame starts (phase 0, the first measurement this page
  // made) or at a seeded random point of the frame, as a shopper's click lands.
  const frameLength = await frameMs();
  let phaseState = 5;
  const phase = () => ((phaseState = (phaseState * 1103515245 + 12345) % 2147483648) / 2147483648) * frameLength;
  // Histories of their own for the random phase (the worker memoizes recent prompts' states).
  const others = histories(ids, 2 * runs.length).slice(runs.length);
  const feltFresh = [], feltGrown = [], randomFresh = [], randomGrown = [];
  for (const [i, h] of runs.slice(1).entries()) {
    feltFresh.push(await felt(widget, () => setHistory(h.slice(1, WINDOW + 1))));
    await felt(widget, () => setHistory(h.slice(0, WINDOW - 1)));
    feltGrown.push(await felt(widget, () => history.record(h[WINDOW - 1])));
    const g = others[i];
    randomFresh.push(await felt(widget, () => setHistory(g.slice(1, WINDOW + 1)), phase()));
    await felt(widget, () => setHistory(g.slice(0, WINDOW - 1)));
    randomGrown.push(await felt(widget, () => history.record(g[WINDOW - 1]), phase()));
  }
  const shown = (runs) => runs.map((r) => r.shownMs);
  const rendered = (runs) => runs.map((r) => r.renderedMs);
  report.widget = {
    frameMs: frameLength,
    freshP50Ms: median(shown(feltFresh)),
    freshP90Ms: p90(shown(feltFresh)),
    grownByOneP50Ms: median(shown(feltGrown)),
    grownByOneP90Ms: p90(shown(feltGrown)),
    // The list in the DOM, before the frame that shows it.
    freshRenderedP50Ms: median(rendered(feltFresh)),
    grownByOneRenderedP50Ms: median(rendered(feltGrown)),
    randomPhase: {
      freshP50Ms: median(shown(randomFresh)),
      freshP90Ms: p90(shown(randomFresh)),
      grownByOneP50Ms: median(shown(randomGrown)),
      grownByOneP90Ms: p90(shown(randomGrown)),
    },
  };
  const beam = [];
  for (let i = 0; i < 5; i++) beam.push((await client.beam(runs[i].slice(0, WINDOW), 10, 20)).ms);
  report["beam10MedianMs"] = median(beam);
  document.getElementById("out").textContent = JSON.stringify(report, null, 2);
  document.body.dataset.done = "1";
}

main().catch((e) => {
  document.getElementById("out").textContent = `error: ${e.message}`;
  document.body.dataset.done = "error";
});
