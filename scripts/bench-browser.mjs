// Runs www/bench.html in headless Chromium twice in one profile (cold, then warm from the Cache
// API) and prints both reports; with --soak N, one run of N recommendations over random
// histories instead (wasm memory and p99 drift). Needs pkg/ (scripts/build-web.sh) and
// `npm install`.
//   node scripts/bench-browser.mjs [--soak 10000]
import { chromium } from "playwright-core";
import { spawn } from "node:child_process";

const ROOT = new URL("..", import.meta.url).pathname;
const port = 19080 + Math.floor(Math.random() * 500);
const server = spawn("python3", [`${ROOT}scripts/serve.py`, "--port", String(port), "--quiet"], { stdio: ["ignore", "pipe", "inherit"] });
await new Promise((resolve) => server.stdout.once("data", resolve));
const browser = await chromium.launch({
  executablePath: "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run", "--enable-unsafe-webgpu"],
});
const context = await browser.newContext();
const page = await context.newPage();
const soak = process.argv.includes("--soak") ? Number(process.argv[process.argv.indexOf("--soak") + 1]) : 0;
for (const visit of soak ? ["soak"] : ["cold", "warm"]) {
  await page.goto(`http://127.0.0.1:${port}/www/bench.html${soak ? `?soak=${soak}` : ""}`);
  await page.waitForSelector("body[data-done]", { timeout: 1800000 });
  console.log(`${visit} visit:`, await page.textContent("#out"));
}
await browser.close();
server.kill();
