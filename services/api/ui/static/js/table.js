// Tables of the admin pages: a caption, column headers with scope, a scrollable wrapper.
import { h } from "./dom.js";

/**
 * A table in a horizontally scrollable region: *caption* names it, *headers* are the column
 * titles, *rows* arrays of cells (strings or nodes). The first cell of each row is its header
 * unless {rowHeader: false}. An empty *rows* shows *empty* in one row instead.
 */
export function table(caption, headers, rows, { rowHeader = true, empty = "Nothing to show." } = {}) {
  const head = h("thead", {}, h("tr", {}, headers.map((title) => h("th", { scope: "col" }, title))));
  const body = h("tbody", {});
  if (rows.length === 0) {
    body.append(h("tr", {}, h("td", { colspan: String(headers.length), class: "muted" }, empty)));
  }
  for (const cells of rows) {
    body.append(h("tr", {}, cells.map((cell, index) =>
      index === 0 && rowHeader ? h("th", { scope: "row" }, cell) : h("td", {}, cell))));
  }
  // Focusable and named, so that keyboard users can scroll it on narrow screens.
  return h("div", { class: "table-wrap admin-table", role: "region", "aria-label": caption, tabindex: "0" },
    h("table", {}, h("caption", {}, caption), head, body));
}

/** "yes"/"no" text for a flag, so that nothing is said by colour or an icon alone. */
export function yesNo(value) {
  return value ? "yes" : "no";
}
