// The shell: login state, navigation by role, hash routes to page modules.
import { ApiFailure, login, logout, session, whenExpired } from "./api.js";
import { clearErrors, field, h, replace, showError } from "./dom.js";

// Route name -> [module, title, who sees it in the navigation ("user", "admin" or "all")].
const ROUTES = {
  certificates: ["./pages/certificates.js", "My certificates", "all"],
  enroll: ["./pages/enroll.js", "Enroll", "all"],
  token: ["./pages/token.js", "Certificate", null],
  pending: ["./pages/pending.js", "Pending requests", "admin"],
  tokens: ["./pages/tokens.js", "All tokens", "admin"],
  events: ["./pages/events.js", "Event handlers", "admin"],
  audit: ["./pages/audit.js", "Audit log", "admin"],
  smtp: ["./pages/smtp.js", "SMTP servers", "admin"],
};
const HOME = "#/certificates";
const SAVED_FORM = "certtoken.saved-form";
const main = document.getElementById("main");
const notice = document.getElementById("notice");
let cleanup = null;

/** The current hash as {name, params, query}: "#/token/ABC?x=1" -> token, ["ABC"], x=1. */
function parseHash() {
  const [path, search] = location.hash.replace(/^#\/?/, "").split("?");
  const [name, ...params] = path.split("/").map(decodeURIComponent);
  return { name: name || "", params, query: new URLSearchParams(search || "") };
}

/** Go to *hash* (e.g. "#/token/ABC"). */
export function navigate(hash) {
  if (location.hash === hash) route();
  else location.hash = hash;
}

/** Show a short message for everyone, read out by screen readers. */
export function announce(text) {
  notice.textContent = text;
  notice.hidden = !text;
}

function renderNav(current) {
  const nav = document.getElementById("nav");
  const who = document.getElementById("who");
  const active = session();
  if (!active) {
    replace(nav);
    replace(who);
    return;
  }
  const items = Object.entries(ROUTES)
    .filter(([, [, , audience]]) => audience === "all" || audience === active.role)
    .map(([name, [, title]]) => h("li", {},
      h("a", { href: `#/${name}`, "aria-current": name === current ? "page" : null }, title)));
  replace(nav, h("ul", {}, items));
  const realm = active.realm ? `@${active.realm}` : "";
  replace(who,
    h("span", {}, `${active.username}${realm} (${active.role})`),
    h("button", { type: "button", class: "link", onclick: () => signOut("You are logged out.") },
      "Log out"));
}

function signOut(message) {
  logout();
  announce(message);
  navigate("#/login");
}

/** Keep what the user typed on this page, to put back after logging in again. */
function saveForm() {
  const values = {};
  for (const control of main.querySelectorAll("input[name], select[name], textarea[name]")) {
    if (control.type === "password" || control.type === "file") continue;
    values[control.name] = control.type === "checkbox" || control.type === "radio"
      ? control.checked : control.value;
  }
  sessionStorage.setItem(SAVED_FORM, JSON.stringify({ hash: location.hash, values }));
}

function restoreForm() {
  const saved = JSON.parse(sessionStorage.getItem(SAVED_FORM) || "null");
  if (!saved || saved.hash !== location.hash) return;
  sessionStorage.removeItem(SAVED_FORM);
  for (const [name, value] of Object.entries(saved.values)) {
    for (const control of main.querySelectorAll(`[name="${CSS.escape(name)}"]`)) {
      if (control.type === "checkbox" || control.type === "radio") control.checked = value;
      else control.value = value;
      control.dispatchEvent(new Event("input", { bubbles: true }));
      control.dispatchEvent(new Event("change", { bubbles: true }));
    }
  }
  announce("Your login had expired; what you entered is back.");
}

whenExpired(() => {
  if (!session()) return;
  saveForm();
  logout();
  const back = location.hash;
  announce("Your login has expired. Log in again to go on where you were.");
  location.hash = `#/login?next=${encodeURIComponent(back)}`;
});

function loginPage(query) {
  document.title = "Log in · certtoken";
  const username = h("input", { name: "username", autocomplete: "username", required: true });
  const password = h("input", {
    name: "password", type: "password", autocomplete: "current-password", required: true,
  });
  const submit = h("button", { type: "submit" }, "Log in");
  const form = h("form", { class: "card narrow", novalidate: true },
    h("h1", {}, "Log in"),
    field("User (user@realm, or an administrator's name)", username).wrap,
    field("Password", password).wrap,
    h("div", { class: "actions" }, submit));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearErrors(form);
    if (!username.value || !password.value) {
      showError(form, new ApiFailure(400, 0,
        `${!username.value ? "username" : "password"}: required`));
      return;
    }
    submit.disabled = true;
    try {
      await login(username.value.trim(), password.value);
      announce("");
      navigate(query.get("next") || HOME);
    } catch (failure) {
      showError(form, failure);
      password.select();
    } finally {
      submit.disabled = false;
    }
  });
  replace(main, form);
  username.focus();
}

async function route() {
  if (cleanup) {
    try { cleanup(); } catch { /* a page's cleanup never blocks the next one */ }
    cleanup = null;
  }
  const { name, params, query } = parseHash();
  const active = session();
  renderNav(name);
  if (name === "login" || !active) {
    if (active) { navigate(HOME); return; }
    loginPage(name === "login" ? query : new URLSearchParams({ next: location.hash || HOME }));
    return;
  }
  const entry = ROUTES[name];
  if (!entry || (entry[2] === "admin" && active.role !== "admin")) {
    navigate(HOME);
    return;
  }
  const [modulePath, title] = entry;
  document.title = `${title} · certtoken`;
  replace(main, h("p", { class: "loading" }, "Loading…"));
  try {
    const page = await import(modulePath);
    const ctx = { session: active, params, query, navigate, announce };
    const result = await page.default(main, ctx);
    if (typeof result === "function") cleanup = result;
    restoreForm();
    const heading = main.querySelector("h1");
    if (heading) {
      heading.tabIndex = -1;
      heading.focus();
    }
  } catch (failure) {
    if (failure instanceof ApiFailure && failure.unauthenticated) return;
    replace(main, h("h1", { tabindex: "-1" }, title),
      h("p", { class: "form-error", role: "alert" }, failure.message || String(failure)));
  }
}

window.addEventListener("hashchange", route);
route();
