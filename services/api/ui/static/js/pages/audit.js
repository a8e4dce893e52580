// The audit log: every call to the api, newest first, filtered and paged.
import { call } from "../api.js";
import { field, h, replace, when } from "../dom.js";
import { DEFAULT_PAGE_SIZE, bounded, keepInAddress, pagedList } from "../paging.js";
import { table } from "../table.js";

const TEXT_FILTERS = ["action", "user", "realm", "serial", "caller"];

/** A datetime-local value (the browser's local time) as ISO 8601 in UTC; "" stays "". */
export function localToIso(value) {
  if (!value) return "";
  const date = new Date(value);
  return Number.isNaN(date.getTime()) ? value : date.toISOString();
}

/** An ISO time as a datetime-local value in the browser's local time. */
function isoToLocal(iso) {
  const date = new Date(iso || "");
  if (Number.isNaN(date.getTime())) return "";
  const local = new Date(date.getTime() - date.getTimezoneOffset() * 60000);
  return local.toISOString().slice(0, 16);
}

function who(row) {
  if (!row.caller) return h("span", { class: "muted" }, "nobody logged in");
  return row.role ? `${row.caller} (${row.role})` : row.caller;
}

function outcome(row) {
  const status = row.status ? ` (${row.status})` : "";
  return h("span", { class: row.success ? "ok-text" : "fail-text" },
    `${row.success ? "succeeded" : "failed"}${status}`);
}

export default async function render(main, ctx) {
  const query = ctx.query;
  const controls = {};
  for (const name of TEXT_FILTERS) {
    controls[name] = h("input", { name, value: query.get(name) || "", autocomplete: "off" });
  }
  controls.success = h("select", { name: "success" },
    [["", "any"], ["true", "succeeded"], ["false", "failed"]].map(([value, label]) =>
      h("option", { value, selected: query.get("success") === value }, label)));
  controls.since = h("input", { name: "since", type: "datetime-local",
    value: isoToLocal(query.get("since")) });
  controls.until = h("input", { name: "until", type: "datetime-local",
    value: isoToLocal(query.get("until")) });
  let pagesize = bounded(query.get("pagesize"), DEFAULT_PAGE_SIZE, 1, 1000);

  const form = h("form", { class: "card", novalidate: true, role: "search",
    "aria-label": "Filter the audit log" },
  h("div", { class: "filters admin-filters" },
    field("Action", controls.action, "e.g. POST /token/init; * matches anything").wrap,
    field("User", controls.user).wrap,
    field("Realm", controls.realm).wrap,
    field("Serial", controls.serial).wrap,
    field("Caller", controls.caller, "who called: an administrator or a user").wrap,
    field("Result", controls.success).wrap,
    field("From (local time)", controls.since).wrap,
    field("Until (local time)", controls.until).wrap),
  h("div", { class: "actions" },
    h("button", { type: "submit" }, "Filter"),
    h("button", { type: "button", class: "secondary", onclick: () => {
      for (const control of Object.values(controls)) control.value = "";
      load(1, pagesize);
    } }, "Clear filters")));
  const results = h("div", { class: "results", "aria-busy": "false" });
  replace(main, h("h1", {}, "Audit log"), form, results);

  function filters() {
    const values = {};
    for (const name of TEXT_FILTERS) values[name] = controls[name].value.trim();
    values.success = controls.success.value;
    values.since = localToIso(controls.since.value);
    values.until = localToIso(controls.until.value);
    return values;
  }

  const load = pagedList({
    form,
    results,
    nouns: ["entry", "entries"],
    filters,
    fetch: (values, page, size) =>
      call("GET", "/audit/", { query: { ...values, page, pagesize: size } }),
    loaded: (values, page, size) => {
      pagesize = size;
      keepInAddress("audit", { ...values, page: page > 1 ? page : "",
        pagesize: size !== DEFAULT_PAGE_SIZE ? size : "" });
    },
    render: (value) => table("Audit log entries, newest first",
      ["No.", "Time", "Action", "Result", "Caller", "User", "Serial", "Client", "Info"],
      value.auditdata.map((row) => [
        String(row.number),
        when(row.startdate),
        row.action,
        outcome(row),
        who(row),
        row.user ? `${row.user}${row.realm ? `@${row.realm}` : ""}` : "",
        row.serial ? h("a", { href: `#/token/${encodeURIComponent(row.serial)}` }, row.serial) : "",
        row.client,
        row.info,
      ]), { empty: "No entry matches these filters." }),
  });

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    load(1, pagesize);
  });
  controls.success.addEventListener("change", () => load(1, pagesize));
  await load(bounded(query.get("page"), 1), pagesize);
  return undefined;
}
