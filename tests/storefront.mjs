// Checks of the storefront widget shared by the page tests of every engine (tests/pages.mjs in
// Chromium, tests/engines.mjs in Chromium, Firefox and WebKit).
import assert from "node:assert/strict";

// Runs in the page: the widget's computed border and padding, and its heading's margin.
export function widgetStyle() {
  const widget = document.getElementById("widget");
  const host = getComputedStyle(widget);
  const heading = getComputedStyle(widget.shadowRoot.querySelector("h3"));
  return { border: host.borderTopWidth, padding: host.paddingTop, headingMargin: heading.marginTop };
}

// The widget's own styles applied (under the server's `style-src 'self'`): its 1px border,
// its padding, and its heading's margin reset.
export function assertStyled(styled) {
  assert.equal(styled.border, "1px", JSON.stringify(styled));
  assert.notEqual(styled.padding, "0px", JSON.stringify(styled));
  assert.equal(styled.headingMargin, "0px", JSON.stringify(styled));
}
