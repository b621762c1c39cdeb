// The widget's first tier in plain JavaScript (www/l2d-follows.js) against the Rust ranking:
// on the parity fixture's histories (tests/fixtures/native_results.json, written by
// tests/web_parity.rs from the shipped follows file), the same top-20, item for item; and bad
// follows files are refused with the field that is wrong. No browser: node runs the module.
//   node tests/follows.mjs
import { readFileSync } from "node:fs";
import { parseFollows, parseItems, rankFollows } from "../www/l2d-follows.js";

const root = new URL("../", import.meta.url);
const dir = new URL("models/default/", root);
const manifest = JSON.parse(readFileSync(new URL("manifest.json", dir)));
const bytes = new Uint8Array(readFileSync(new URL(manifest.follows, dir)));
const file = parseFollows(bytes);
const items = parseItems(manifest.items.map((name) => new Uint8Array(readFileSync(new URL(name, dir)))));
const index = new Map(items.map((item, i) => [item.id, i]));
const fixture = JSON.parse(readFileSync(new URL("tests/fixtures/native_results.json", root)));

let failures = 0;
function check(name, ok, detail) {
  console.log(`${ok ? "ok  " : "FAIL"} ${name}${ok ? "" : `: ${detail}`}`);
  if (!ok) failures += 1;
}

check("the follows file names the items parts' catalog", file.items === items.length, `${file.items} vs ${items.length}`);
check("the fixture has first-tier rankings", fixture.every((c) => c.follows && c.follows.length === 20), "regenerate: L2D_BLESS=1 cargo test --release --test web_parity");
for (const c of fixture) {
  const history = c.history.map((id) => index.get(id));
  const got = rankFollows(file, history, 20, history).map((i) => items[i].id);
  check(`history [${c.history.join(", ")}]: the Rust top-20`, JSON.stringify(got) === JSON.stringify(c.follows), `got ${got} want ${c.follows}`);
}

// Bad files: (what is changed, the message expected).
const cases = [
  ["too short", (b) => b.subarray(0, 10), /10 bytes, expected at least 64/],
  ["another magic", (b) => ((b[0] = 88), b), /magic/],
  ["another version", (b) => ((b[8] = 2), b), /version 2, expected 1/],
  ["popularity past the end", (b) => (new DataView(b.buffer).setUint32(60, 1e9, true), b), /popularity length/],
  ["a trailing byte", (b) => Uint8Array.from([...b, 0]), /1 bytes after the last item/],
  ["cut in the pairs", (b) => b.subarray(0, b.length - 1), /truncated/],
];
for (const [name, edit, want] of cases) {
  let message = "accepted";
  try {
    parseFollows(edit(Uint8Array.from(bytes)));
  } catch (e) {
    message = e.message;
  }
  check(`a follows file with ${name} is refused`, want.test(message), message);
}
check("an empty history gets the most popular items", JSON.stringify(rankFollows(file, [], 3)) ===
  JSON.stringify(Array.from({ length: file.items }, (_, i) => i).sort((a, b) => file.popularity[b] - file.popularity[a] || a - b).slice(0, 3)), "");

console.log(failures ? `${failures} failed` : "all first-tier checks passed");
process.exit(failures ? 1 : 0);
