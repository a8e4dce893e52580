// Paging of the admin lists: privacyIDEA's count/current/next/prev, a page size select, and
// the list's filters kept in the address (so a reload or a shared link shows the same page).
import { ApiFailure } from "./api.js";
import { clearErrors, h, newId, replace, showError } from "./dom.js";

export const PAGE_SIZES = [5, 10, 15, 25, 50, 100];
export const DEFAULT_PAGE_SIZE = 15;

/** A whole number from *text* within [min, max], else *fallback*. */
export function bounded(text, fallback, min = 1, max = 1000000) {
  const value = Number.parseInt(text, 10);
  return Number.isInteger(value) && value >= min && value <= max ? value : fallback;
}

/** The page's address with *values* as its query (empty values left out), not a new visit. */
export function keepInAddress(route, values) {
  const query = new URLSearchParams();
  for (const [key, value] of Object.entries(values)) {
    if (value !== undefined && value !== null && value !== "") query.set(key, String(value));
  }
  const text = query.toString();
  history.replaceState(null, "", `#/${route}${text ? `?${text}` : ""}`);
}

/**
 * The pager under a list: "Previous", "Page n of m (count things)", "Next", and the page size.
 * *answer* is privacyIDEA's {count, current, next, prev}; *nouns* [one, many] name the items;
 * *go(page, pagesize, which)* loads a page (*which*: the pager control used).
 */
export function pager(answer, pagesize, nouns, go) {
  const [one, many] = nouns;
  const count = answer.count || 0;
  const current = answer.current || 1;
  const pages = Math.max(1, Math.ceil(count / pagesize));
  const sizeId = newId("pagesize");
  const size = h("select", { id: sizeId, name: "pagesize" },
    PAGE_SIZES.map((n) => h("option", { value: String(n), selected: n === pagesize }, String(n))));
  size.dataset.which = "size";
  size.addEventListener("change", () => go(1, Number(size.value), "size"));
  const prev = h("button", {
    type: "button", class: "secondary", disabled: !answer.prev, dataset: { which: "prev" },
    onclick: () => go(answer.prev, pagesize, "prev"),
  }, "Previous page");
  const next = h("button", {
    type: "button", class: "secondary", disabled: !answer.next, dataset: { which: "next" },
    onclick: () => go(answer.next, pagesize, "next"),
  }, "Next page");
  return h("nav", { class: "pager admin-pager", "aria-label": `Pages of ${many}` },
    prev,
    h("span", { class: "pager-where", role: "status", tabindex: "-1" },
      `Page ${current} of ${pages} (${count} ${count === 1 ? one : many})`),
    next,
    h("span", { class: "pager-size" }, h("label", { for: sizeId }, "Per page"), size));
}

/** After a page was replaced, focus what was used in its pager (or where it says the page). */
export function refocusPager(container, which) {
  if (!which) return;
  const control = container.querySelector(`.pager [data-which="${which}"]`);
  if (control && !control.disabled) control.focus();
  else container.querySelector(".pager-where")?.focus();
}

/**
 * A filtered list loaded a page at a time into *results*; the newest load wins (an overtaken
 * answer is dropped) and a refusal shows in *form*. *filters()* reads the form once per load;
 * *fetch(filters, page, pagesize)* asks the API; *loaded(filters, page, pagesize)* records
 * the shown page; *render(value)* makes the list. Returns load(page, pagesize, which).
 */
export function pagedList({ form, results, nouns, filters, fetch, loaded, render }) {
  let generation = 0;
  async function load(page, pagesize, which) {
    generation += 1;
    const mine = generation;
    clearErrors(form);
    results.setAttribute("aria-busy", "true");
    const values = filters();
    try {
      const value = await fetch(values, page, pagesize);
      if (mine !== generation) return;
      loaded(values, page, pagesize);
      replace(results, render(value), pager(value, pagesize, nouns, load));
      refocusPager(results, which);
    } catch (failure) {
      if (mine !== generation || (failure instanceof ApiFailure && failure.unauthenticated)) return;
      showError(form, failure);
      replace(results);
    } finally {
      results.setAttribute("aria-busy", "false");
    }
  }
  return load;
}
