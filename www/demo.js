// The paper demo page: pick a history, compare the shipped scoring (what the widget ranks by),
// L2D-G, L2D-L and beam search side by side.
import { L2DClient } from "./l2d-client.js";

const $ = (id) => document.getElementById(id);
const l2d = new L2DClient();
let catalog = [];
let history = [];
// The example history a first visit opens with (MovieLens ids): Star Wars: Episode IV, The Matrix, Toy Story.
const EXAMPLE = ["260", "2571", "1"];
let running = 0;

function text(el, value) {
  el.textContent = value;
}

function renderList(el, items) {
  el.replaceChildren(
    ...items.map((item) => {
      const li = document.createElement("li");
      li.textContent = item.title; // titles are untrusted: text, never HTML
      li.title = `id ${item.id}`;
      return li;
    }),
  );
}

function renderHistory() {
  $("history").replaceChildren(
    ...history.map((id, i) => {
      const li = document.createElement("li");
      li.textContent = catalog.find((c) => c.id === id)?.title ?? id;
      li.title = "click to remove";
      li.addEventListener("click", () => {
        history.splice(i, 1);
        renderHistory();
        refresh();
      });
      return li;
    }),
  );
}

function bars(el, rows, unit) {
  const max = Math.max(...rows.map((r) => r.value), 1e-9);
  el.replaceChildren(
    ...rows.map((r) => {
      const row = document.createElement("div");
      row.className = "row";
      const label = document.createElement("span");
      label.className = "label";
      label.textContent = r.label;
      const bar = document.createElement("span");
      bar.className = "bar" + (r.beam ? " beam" : "");
      bar.style.width = `${(r.value / max) * 20}rem`;
      const value = document.createElement("span");
      value.textContent = `${r.value.toFixed(unit === "ms" ? 1 : 4)} ${unit}`;
      row.append(label, bar, value);
      return row;
    }),
  );
}

async function refresh() {
  const mine = ++running;
  const k = Number($("k").value) || 10;
  const m = Number($("m").value);
  const beam = Number($("beam").value);
  if (history.length === 0) {
    for (const id of ["shipped", "global", "local", "beam"]) {
      renderList($(`${id}-list`), []);
      text($(`${id}-time`), "pick a few movies");
    }
    return;
  }
  try {
    // No mode: the manifest's scoring, as the widget ranks.
    const shipped = await l2d.recommend(history, { k });
    const global = await l2d.recommend(history, { k, mode: "global" });
    const local = await l2d.recommend(history, { k, mode: "local", m });
    if (mine !== running) return;
    renderList($("shipped-list"), shipped.items);
    text($("shipped-time"), `${(shipped.encodeMs + shipped.scoreMs).toFixed(1)} ms · ${shipped.backend}`);
    renderList($("global-list"), global.items);
    renderList($("local-list"), local.items);
    text($("global-time"), `${(global.encodeMs + global.scoreMs).toFixed(1)} ms (encode ${global.encodeMs.toFixed(1)}, score ${global.scoreMs.toFixed(1)}) · ${global.backend}`);
    text($("local-time"), `${(local.encodeMs + local.scoreMs).toFixed(1)} ms · ${local.backend}`);
    text($("beam-time"), "decoding…");
    const beamResult = await l2d.beam(history, beam, k);
    if (mine !== running) return;
    renderList($("beam-list"), beamResult.items);
    text($("beam-time"), `${beamResult.ms.toFixed(1)} ms · cpu`);
    bars($("latency-chart"), [
      { label: "shipped", value: shipped.encodeMs + shipped.scoreMs },
      { label: "L2D-G", value: global.encodeMs + global.scoreMs },
      { label: `L2D-L (M=${m})`, value: local.encodeMs + local.scoreMs },
      { label: `beam ${beam}`, value: beamResult.ms, beam: true },
    ], "ms");
    document.body.dataset.ready = "results";
    // How long a history all four lists were decoded for (pages wait on it).
    document.body.dataset.decoded = String(history.length);
  } catch (e) {
    text($("status"), `Error: ${e.message}`);
    $("status").className = "error";
  }
}

async function loadEvalChart() {
  try {
    const response = await fetch("../models/default/eval.json");
    if (!response.ok) return;
    const evalTable = await response.json();
    text($("eval-source"), `(${evalTable.split}, ${evalTable.samples} samples; from l2d eval)`);
    const rows = [];
    for (const report of evalTable.reports) {
      rows.push({ label: `${report.method} R@20`, value: report.overall.recall[2], beam: report.method.startsWith("beam") });
    }
    bars($("eval-chart"), rows, "");
  } catch (_) {}
}

async function main() {
  $("search").addEventListener("input", () => {
    const q = $("search").value.trim().toLowerCase();
    const hits = q.length < 2 ? [] : catalog.filter((c) => c.title.toLowerCase().includes(q)).slice(0, 30);
    $("search-results").replaceChildren(
      ...hits.map((item) => {
        const li = document.createElement("li");
        li.textContent = item.title;
        li.addEventListener("click", () => {
          history.push(item.id);
          renderHistory();
          refresh();
        });
        return li;
      }),
    );
  });
  $("clear").addEventListener("click", () => {
    history = [];
    renderHistory();
    refresh();
  });
  for (const id of ["m", "beam", "k"]) {
    $(id).addEventListener("change", () => {
      text($("m-value"), $("m").value);
      refresh();
    });
  }
  loadEvalChart();
  try {
    const info = await l2d.load({ manifestUrl: new URL("../models/default/manifest.json", location.href).href }, (p) => {
      $("progress").value = p.total ? p.loaded / p.total : 0;
      text($("status"), `${p.cached ? "From cache" : "Downloading"} ${p.file}: ${(p.loaded / 1e6).toFixed(1)} MB`);
    });
    catalog = await l2d.items();
    $("progress").hidden = true;
    const modeName = { density: "density", local: "L2D-L", global: "L2D-G" }[info.defaultMode] ?? "L2D-G";
    text($("shipped-scoring"), `${modeName}${info.follows ? " + follows" : ""}, as the widget ranks`);
    text($("status"), `Ready: ${info.items} movies, ${info.dim}-dimensional states, ${info.memoryStates} memory states (${info.coldItems} items without any, ${info.coldWithVectors ? "ranked by their title vectors" : "ranked last"})${info.follows ? `; what followed the history's items in ${info.followPairs} recorded pairs counts too (weight ${info.follows})` : ""}; the model runs on ${info.simd === "relaxed" ? "relaxed SIMD" : "SIMD"} in this browser.`);
    $("search").disabled = false;
    document.body.dataset.ready = "loaded";
    // A first-time visitor sees an example decoded by every method; ?history=ID,ID,… sets another.
    const params = new URLSearchParams(location.search);
    const known = new Set(catalog.map((item) => item.id));
    const start = params.get("history") ? params.get("history").split(",") : EXAMPLE.filter((id) => known.has(id));
    if (start.length) {
      history = start;
      renderHistory();
      refresh();
    }
  } catch (e) {
    text($("status"), `Could not load the model: ${e.message}`);
    $("status").className = "error";
  }
}

main();
