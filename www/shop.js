// Example storefront: the catalog as a product grid; clicking a product records a view.
import { history, sharedFollows } from "./l2d-widget.js";

const products = document.getElementById("products");
const search = document.getElementById("search");
let catalog = [];

function render() {
  const q = search.value.trim().toLowerCase();
  const shown = (q ? catalog.filter((c) => c.title.toLowerCase().includes(q)) : catalog).slice(0, 60);
  products.replaceChildren(
    ...shown.map((item) => {
      const card = document.createElement("div");
      card.className = "product";
      card.textContent = item.title; // untrusted text
      card.dataset.id = item.id;
      card.addEventListener("click", () => history.record(item.id));
      return card;
    }),
  );
}

async function main() {
  // A real storefront lists its own products; this one shows the catalog of the deployed folder
  // as soon as its items parts arrive (the widget's first tier loads them; the model comes later).
  // ?manifest=URL picks another deployed folder, ?widget=0 shows the shop without the widget
  // (the benchmark's reference), ?debug=1 shows the widget's diagnostics, ?model=never|always
  // sets the widget's model policy.
  const params = new URLSearchParams(location.search);
  const manifest = new URL(params.get("manifest") || "../models/default/manifest.json", document.baseURI).href;
  if (params.get("widget") !== "0") {
    const widget = document.createElement("l2d-recommendations");
    widget.id = "widget";
    widget.setAttribute("manifest", manifest);
    widget.setAttribute("k", "8");
    if (params.get("debug") === "1") widget.setAttribute("debug", "");
    if (params.get("model")) widget.setAttribute("model", params.get("model"));
    document.getElementById("aside").append(widget);
  }
  try {
    catalog = [...(await sharedFollows(manifest)).items].sort((a, b) => b.count - a.count);
    render();
    document.body.dataset.ready = "products";
  } catch (e) {
    products.textContent = "The catalog could not be loaded.";
    document.body.dataset.ready = "error";
  }
}

search.addEventListener("input", render);
main();
