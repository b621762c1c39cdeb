// Browser benchmark page: prints a JSON report into #out (read by scripts/bench-browser.mjs).
import { L2DClient } from "./l2d-client.js";

const HISTORY = ["318", "858", "50", "527", "593", "296", "2959", "47", "110", "356"];
const ROUNDS = 30;

function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

async function main() {
  const report = { history: HISTORY.length, rounds: ROUNDS };
  const t0 = performance.now();
  const client = new L2DClient();
  let downloaded = 0;
  let cachedFiles = 0;
  await client.load({ manifestUrl: new URL("../models/default/manifest.json", location.href).href }, (p) => {
    if (p.cached) cachedFiles += p.loaded === p.total ? 1 : 0;
    else downloaded = Math.max(downloaded, p.loaded);
  });
  await client.recommend(HISTORY, { k: 20, backend: "cpu" });
  report.loadToFirstMs = performance.now() - t0;
  report.visit = cachedFiles > 0 ? "warm (Cache API)" : "cold (network)";
  report.hasWebGPU = await client.hasWebGPU();
  for (const backend of report.hasWebGPU ? ["cpu", "webgpu"] : ["cpu"]) {
    for (const mode of ["global", "local"]) {
      await client.recommend(HISTORY, { k: 20, mode, backend }); // warm-up
      const total = [];
      const encode = [];
      const score = [];
      for (let i = 0; i < ROUNDS; i++) {
        const start = performance.now();
        const r = await client.recommend(HISTORY, { k: 20, mode, backend });
        total.push(performance.now() - start);
        encode.push(r.encodeMs);
        score.push(r.scoreMs);
      }
      report[`${backend}/${mode}`] = { medianMs: median(total), encodeMs: median(encode), scoreMs: median(score) };
    }
  }
  const beam = [];
  for (let i = 0; i < 5; i++) beam.push((await client.beam(HISTORY, 10, 20)).ms);
  report["beam10MedianMs"] = median(beam);
  document.getElementById("out").textContent = JSON.stringify(report, null, 2);
  document.body.dataset.done = "1";
}

main().catch((e) => {
  document.getElementById("out").textContent = `error: ${e.message}`;
  document.body.dataset.done = "error";
});
