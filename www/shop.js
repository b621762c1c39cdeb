// Example storefront: the catalog as a product grid; clicking a product records a view.
import { history, sharedClient } from "./l2d-widget.js";

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
  // A real storefront lists its own products; this one shows the catalog shipped in the blob,
  // asked from the widget's (shared) worker.
  const manifest = new URL(new URLSearchParams(location.search).get("manifest") || "../models/default/manifest.json", document.baseURI).href;
  const widget = document.createElement("l2d-recommendations");
  widget.id = "widget";
  widget.setAttribute("manifest", manifest);
  widget.setAttribute("k", "8");
  document.getElementById("aside").append(widget);
  const { client, loaded } = sharedClient(manifest);
  try {
    await loaded;
    catalog = (await client.items()).sort((a, b) => b.count - a.count);
    render();
    document.body.dataset.ready = "products";
  } catch (e) {
    products.textContent = "The catalog could not be loaded.";
    document.body.dataset.ready = "error";
  }
}

search.addEventListener("input", render);
main();
