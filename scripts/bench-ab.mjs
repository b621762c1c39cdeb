// Paired comparison of wasm builds in one Node process (Node 20+): each build (a directory laid out as
// pkg/, from scripts/build-web.sh) loads the shipped model with `Recommender.fromBytes`, and
// every random history goes through all of them, the order alternating, so host drift (up to
// 30 % between runs minutes apart here) falls on every build alike. Reports per build the
// median of `hidden()` for a fresh 10-item history and of `recommend` (CPU) for a history that
// grew by one item (8 items, then the same 8 + 1: the encoder reuses the cache).
//   node scripts/bench-ab.mjs [--seconds 40] [--mode global] [--model models/default] DIR_A DIR_B …
import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import { pathToFileURL } from "node:url";

const args = process.argv.slice(2);
const options = { "--seconds": "40", "--mode": "global", "--model": "models/default" };
const dirs = [];
for (let i = 0; i < args.length; i++) {
  if (args[i] in options) {
    if (i + 1 >= args.length) throw new Error(`${args[i]} needs a value`);
    options[args[i]] = args[++i];
  } else {
    dirs.push(resolve(args[i]));
  }
}
const seconds = Number(options["--seconds"]);
if (!(seconds > 0)) throw new Error(`--seconds must be a positive number, got ${options["--seconds"]}`);
if (dirs.length === 0) throw new Error("usage: node scripts/bench-ab.mjs [options] DIR_A DIR_B … (each a pkg/ build)");

const model = resolve(options["--model"]);
const file = (name) => readFileSync(`${model}/${name}`);
const manifest = file("manifest.json").toString();
const parts = JSON.parse(manifest).items;
const items = Buffer.concat(parts.map(file));

async function load(dir) {
  const mod = await import(pathToFileURL(`${dir}/l2d.js`).href);
  await mod.default({ module_or_path: readFileSync(`${dir}/l2d_bg.wasm`) });
  // The memory blob when the manifest lists one (the default modes read it), else the global one.
  const blobs = JSON.parse(manifest).blobs;
  const blob = blobs.memory ?? blobs.global;
  return mod.Recommender.fromBytes(
    file("config.json"), file(mod.weightsFile(manifest)), file("tokenizer.json"), file("l2d.json"),
    file(blob), items, manifest,
  );
}

const recommenders = [];
for (const dir of dirs) recommenders.push(await load(dir));
const ids = items.toString().trim().split("\n").map((line) => JSON.parse(line).id);
let seed = 7;
const random = () => (seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648;
const pick = () => ids[Math.floor(random() * ids.length)];
const mode = options["--mode"];
const fresh = dirs.map(() => []);
const grown = dirs.map(() => []);
const start = performance.now();
let round = 0;
while (performance.now() - start < seconds * 1000) {
  const history = Array.from({ length: 10 }, pick);
  const base = history.slice(0, 8);
  const longer = [...base, pick()];
  const order = round % 2 ? [...dirs.keys()].reverse() : [...dirs.keys()];
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
const median = (values) => values.sort((a, b) => a - b)[values.length >> 1].toFixed(2);
dirs.forEach((dir, i) =>
  console.log(
    `${dir}: ${round} rounds, fresh hidden median ${median(fresh[i])} ms, ` +
      `grown-by-one recommend (${mode}, cpu) median ${median(grown[i])} ms`,
  ),
);
