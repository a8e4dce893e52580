// My certificates: the caller's tokens (an admin: anyone's, by user@realm), a page at a time,
// updating by itself while one waits for its CA or a manager.
import { call } from "../api.js";
import { clearErrors, field, h, replace, showError, when } from "../dom.js";
import {
  caOf, changeText, isWaiting, stateBadges, stateText, subjectOf, watchWaiting,
} from "../token_info.js";

const PAGESIZE = 15;

/** "alice@corp" -> {user: "alice", realm: "corp"}; "" -> {}. */
function ownerQuery(text) {
  const value = text.trim();
  if (!value) return {};
  const at = value.lastIndexOf("@");
  if (at <= 0) return { user: value };
  return { user: value.slice(0, at), realm: value.slice(at + 1) };
}

/** The hash of this page with *changes* to its query. */
function pageHash(query, changes) {
  const next = new URLSearchParams(query);
  for (const [key, value] of Object.entries(changes)) {
    if (value) next.set(key, String(value));
    else next.delete(key);
  }
  const text = next.toString();
  return `#/certificates${text ? `?${text}` : ""}`;
}

function tokenRow(token, admin) {
  const text = isWaiting(token) ? stateText(token) : "";
  const cells = [
    h("th", { scope: "row", "data-label": "Serial" },
      h("a", { href: `#/token/${encodeURIComponent(token.serial)}` }, token.serial)),
    h("td", { "data-label": "State" }, stateBadges(token),
      text ? h("p", { class: "state-note" }, text) : null),
    admin ? h("td", { "data-label": "Owner" },
      token.username ? `${token.username}@${token.user_realm}` : "") : null,
    h("td", { "data-label": "Subject", class: "wrap-anywhere" }, subjectOf(token)),
    h("td", { "data-label": "Valid until" }, when((token.info || {}).certificate_not_after)),
    h("td", { "data-label": "CA" }, caOf(token)),
  ];
  return h("tr", { dataset: { serial: token.serial } }, cells);
}

function tokenTable(tokens, admin, caption) {
  const heads = ["Serial", "State", admin ? "Owner" : null, "Subject", "Valid until", "CA"]
    .filter(Boolean)
    .map((name) => h("th", { scope: "col" }, name));
  return h("div", { class: "table-wrap" },
    h("table", { class: "stacking", id: "certificates-table" },
      h("caption", {}, caption),
      h("thead", {}, h("tr", {}, heads)),
      h("tbody", {}, tokens.map((t) => tokenRow(t, admin)))));
}

function pager(value, query) {
  const nav = h("nav", { class: "pager", "aria-label": "Pages" });
  if (value.prev) nav.append(h("a", { href: pageHash(query, { page: value.prev }) }, "Previous page"));
  nav.append(h("span", {}, `Page ${value.current} of ${Math.max(1, Math.ceil(value.count / PAGESIZE))}`));
  if (value.next) nav.append(h("a", { href: pageHash(query, { page: value.next }) }, "Next page"));
  return nav;
}

function ownerFilter(ctx) {
  const input = h("input", {
    name: "owner", value: ctx.query.get("owner") || "", autocomplete: "off",
    placeholder: "alice@corp",
  });
  const form = h("form", { class: "filters card", role: "search" },
    field("User (user@realm)", input, "Empty: every user's certificates.").wrap,
    h("div", { class: "actions" }, h("button", { type: "submit" }, "Show")));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    ctx.navigate(pageHash(ctx.query, { owner: input.value.trim(), page: "" }));
  });
  return form;
}

export default async function render(main, ctx) {
  const admin = ctx.session.role === "admin";
  const owner = admin ? (ctx.query.get("owner") || "") : "";
  const page = Math.max(1, Number.parseInt(ctx.query.get("page") || "1", 10) || 1);
  const heading = admin ? "Certificates" : "My certificates";
  const results = h("div", { class: "results" });
  const filter = admin ? ownerFilter(ctx) : null;
  replace(main, h("h1", {}, heading), filter, results);

  const query = { ...ownerQuery(owner), page, pagesize: PAGESIZE };
  const load = () => call("GET", "/token/", { query });
  let value;
  try {
    value = await load();
  } catch (failure) {
    if (filter) {
      clearErrors(filter);
      showError(filter, failure.field === "realm" || failure.field === "user"
        ? Object.assign(failure, { field: "owner" }) : failure);
    }
    replace(results, h("p", { class: "form-error", role: "alert" }, failure.message));
    return undefined;
  }

  const caption = admin
    ? (owner ? `Certificates of ${owner}` : "Every user's certificates")
    : "Your certificates";

  function show(current) {
    const tokens = current.tokens || [];
    const body = tokens.length
      ? [tokenTable(tokens, admin, caption), pager(current, ctx.query)]
      : [h("p", {}, admin ? "No certificates found." : "You have no certificates yet."),
        h("p", {}, h("a", { href: "#/enroll" }, "Enroll a certificate"))];
    replace(results, body);
  }

  show(value);
  return watchWaiting(value.tokens || [], async () => {
    value = await load();
    return value.tokens || [];
  }, (tokens, changed) => {
    show(value);
    ctx.announce(changed.map(({ token, before }) => changeText(token, before)).join(" "));
  });
}
