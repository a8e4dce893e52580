// All tokens, for administrators: filters by owner, realm, state and CA, a page at a time.
import { ApiFailure, call } from "../api.js";
import { badge, field, h, replace, when } from "../dom.js";
import { DEFAULT_PAGE_SIZE, bounded, keepInAddress, pagedList } from "../paging.js";
import { table } from "../table.js";

/** certtoken's own states, as the certtoken_state filter takes them. */
export const STATES = ["submitted", "pending", "enrolled", "denied", "failed", "revoked"];
const FILTERS = ["user", "realm", "certtoken_state", "ca"];

function stateCell(token) {
  const state = token.certtoken_state || token.rollout_state;
  const disabled = token.active === false && state !== "revoked";
  return h("span", { class: "state-badges" }, badge(state), disabled ? [" ", badge("disabled")] : null);
}

function ownerCell(token) {
  if (!token.username) return h("span", { class: "muted" }, "no owner");
  return token.user_realm ? `${token.username}@${token.user_realm}` : token.username;
}

function select(name, choices, current, anyLabel) {
  return h("select", { name },
    h("option", { value: "" }, anyLabel),
    choices.map((value) => h("option", { value, selected: value === current }, value)));
}

export default async function render(main, ctx) {
  const query = ctx.query;
  const state = {
    user: query.get("user") || "",
    realm: query.get("realm") || "",
    certtoken_state: STATES.includes(query.get("certtoken_state")) ? query.get("certtoken_state") : "",
    ca: query.get("ca") || "",
    page: bounded(query.get("page"), 1),
    pagesize: bounded(query.get("pagesize"), DEFAULT_PAGE_SIZE, 1, 1000),
  };
  let names = [];
  try {
    names = (await call("GET", "/caconnector/")).map((c) => c.connectorname);
  } catch (failure) {
    if (failure instanceof ApiFailure && failure.unauthenticated) return undefined;
  }
  if (state.ca && !names.includes(state.ca)) names.push(state.ca);

  const user = h("input", { name: "user", value: state.user, autocomplete: "off" });
  const realm = h("input", { name: "realm", value: state.realm, autocomplete: "off" });
  const stateSelect = select("certtoken_state", STATES, state.certtoken_state, "any state");
  const caSelect = select("ca", names, state.ca, "any CA");
  const form = h("form", { class: "card", novalidate: true, role: "search", "aria-label": "Filter tokens" },
    h("div", { class: "filters admin-filters" },
      field("User", user).wrap,
      field("Realm", realm).wrap,
      field("State", stateSelect).wrap,
      field("CA", caSelect).wrap,
      h("div", { class: "actions" },
        h("button", { type: "submit" }, "Filter"),
        h("button", { type: "button", class: "secondary", onclick: () => {
          user.value = "";
          realm.value = "";
          stateSelect.value = "";
          caSelect.value = "";
          apply();
        } }, "Clear filters"))));
  const results = h("div", { class: "results", "aria-busy": "false" });
  replace(main, h("h1", {}, "All tokens"), form, results);

  function apply() {
    state.user = user.value.trim();
    state.realm = realm.value.trim();
    state.certtoken_state = stateSelect.value;
    state.ca = caSelect.value;
    load(1, state.pagesize);
  }
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    apply();
  });
  for (const control of [stateSelect, caSelect]) control.addEventListener("change", apply);

  const load = pagedList({
    form,
    results,
    nouns: ["token", "tokens"],
    filters: () => Object.fromEntries(FILTERS.map((key) => [key, state[key]])),
    fetch: (filters, page, pagesize) =>
      call("GET", "/token/", { query: { ...filters, page, pagesize } }),
    loaded: (filters, page, pagesize) => {
      state.page = page;
      state.pagesize = pagesize;
      keepInAddress("tokens", { ...filters, page: page > 1 ? page : "", pagesize:
        pagesize !== DEFAULT_PAGE_SIZE ? pagesize : "" });
    },
    render: (value) => table("Tokens",
      ["Serial", "Owner", "State", "CA", "Template", "Created", "Valid until"],
      value.tokens.map((token) => [
        h("a", { href: `#/token/${encodeURIComponent(token.serial)}` }, token.serial),
        ownerCell(token),
        stateCell(token),
        (token.info && token.info.CA) || "",
        (token.info && token.info.template) || "default",
        when(token.created),
        when(token.info && token.info.certificate_not_after),
      ]), { empty: "No token matches these filters." }),
  });

  await load(state.page, state.pagesize);
  return undefined;
}
