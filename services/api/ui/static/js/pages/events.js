// Event handlers: the list, enable or disable each, and a dry run that says what a sample
// event would do (which mails, or why a handler does not match) without sending anything.
import { ApiFailure, call } from "../api.js";
import { badge, clearErrors, field, h, replace, showError } from "../dom.js";
import { table } from "../table.js";

/** Rollout states a sample event may carry. */
const STATES = ["submitted", "pending", "enrolled", "denied", "failed", "revoked"];
const RECIPIENTS = {
  tokenowner: "the token owner",
  email: "fixed addresses",
  "internal admin": "an administrator",
  logged_in_user: "whoever acted",
};

/** A handler's action in words: "send mail to the token owner (SMTP server mail)". */
export function actionText(handler) {
  const options = handler.options || {};
  if (handler.action !== "sendmail") return handler.action;
  let to = RECIPIENTS[options.To] || options.To || "nobody";
  if (options.To === "email" && options["To email"]) to = options["To email"];
  if (options.To === "internal admin" && options["To internal admin"]) {
    to = `administrator ${options["To internal admin"]}`;
  }
  const server = options.emailconfig ? `SMTP server ${options.emailconfig}` : "the mail outbox";
  return `send mail to ${to} (${server})`;
}

/** A handler's conditions as "name = value" lines, or "none". */
function conditionsText(handler) {
  const entries = Object.entries(handler.conditions || {});
  if (entries.length === 0) return h("span", { class: "muted" }, "none");
  return h("ul", { class: "plain" }, entries.map(([name, value]) => h("li", {}, `${name} = ${value}`)));
}

/** Why a handler does not match, as the end of "does not match because …". */
export function mismatchText(reason) {
  if (reason === "inactive") return "it is disabled";
  if (reason.startsWith("not bound to ")) return `it is ${reason}`;
  const [condition, ...rest] = reason.split(": ");
  return rest.length ? `its condition ${condition} fails: ${rest.join(": ")}` : reason;
}

export default async function render(main, ctx) {
  const [handlers, available] = await Promise.all([
    call("GET", "/event/"), call("GET", "/event/available"),
  ]);
  const listArea = h("div", { class: "handlers" });
  const dryRun = h("section", { "aria-labelledby": "dry-run-title" });
  replace(main,
    h("h1", {}, "Event handlers"),
    h("p", {}, "Handlers send mail when tokens change. Disable one to stop its mails; try an " +
      "event below to see what each handler would do."),
    listArea,
    dryRun);

  function showList(list) {
    const rows = list.map((handler) => {
      const verb = handler.active ? "Disable" : "Enable";
      const button = h("button", {
        type: "button", class: handler.active ? "secondary" : "",
        "aria-label": `${verb} handler ${handler.name}`,
        onclick: () => toggle(handler, button),
      }, verb);
      return [
        handler.name,
        (handler.event || []).join(", "),
        actionText(handler),
        conditionsText(handler),
        badge(handler.active ? "active" : "disabled"),
        button,
      ];
    });
    replace(listArea,
      table("Event handlers", ["Name", "Events", "Action", "Conditions", "State", "Change"], rows,
        { empty: "No event handlers are defined." }));
  }

  async function toggle(handler, button) {
    clearErrors(listArea);
    button.disabled = true;
    const verb = handler.active ? "disable" : "enable";
    try {
      await call("POST", `/event/${verb}/${encodeURIComponent(handler.id)}`);
      const list = await call("GET", "/event/");
      showList(list);
      ctx.announce(`Handler ${handler.name} is ${verb}d.`);
      const again = [...listArea.querySelectorAll("button")]
        .find((b) => b.getAttribute("aria-label")?.endsWith(` handler ${handler.name}`));
      again?.focus();
    } catch (failure) {
      if (failure instanceof ApiFailure && failure.unauthenticated) return;
      button.disabled = false;
      showError(listArea, failure);
    }
  }

  showList(handlers);

  // --- the dry run ---------------------------------------------------------------------
  const handlerSelect = h("select", { name: "handler" },
    h("option", { value: "" }, "all handlers"),
    handlers.map((handler) => h("option", { value: String(handler.id) }, handler.name)));
  const eventSelect = h("select", { name: "event" },
    available.map((name) => h("option", { value: name }, name)));
  const serial = h("input", { name: "serial", autocomplete: "off" });
  const username = h("input", { name: "username", autocomplete: "off" });
  const realm = h("input", { name: "realm", autocomplete: "off" });
  const state = h("select", { name: "rollout_state" },
    h("option", { value: "" }, "as the token is (or none)"),
    STATES.map((name) => h("option", { value: name }, name)));
  const summary = h("p", { role: "status", class: "muted" });
  const results = h("div", { class: "dry-run-results" });
  const form = h("form", { class: "card", novalidate: true },
    h("div", { class: "filters admin-filters dry-run-form" },
      field("Handler", handlerSelect).wrap,
      field("Event", eventSelect).wrap,
      field("Token serial", serial, "Optional: owner, state, CA and template come from it.").wrap,
      field("Owner (user name)", username).wrap,
      field("Owner's realm", realm).wrap,
      field("Rollout state", state).wrap),
    h("div", { class: "actions" }, h("button", { type: "submit" }, "Try the event")));
  replace(dryRun, h("h2", { id: "dry-run-title" }, "Dry run"),
    h("p", {}, "Nothing is sent: this shows which mails the event would cause."), form, summary, results);

  async function sampleData() {
    const data = { tokentype: "certificate" };
    const wanted = serial.value.trim();
    if (wanted) {
      const value = await call("GET", "/token/", { query: { serial: wanted, pkcs12: "false" } });
      const token = value.tokens[0];
      if (!token) throw new ApiFailure(404, 404, `serial: no token ${wanted}`);
      Object.assign(data, {
        serial: token.serial,
        username: token.username,
        realm: token.user_realm,
        rollout_state: token.certtoken_state || token.rollout_state,
        ca: (token.info && token.info.CA) || "",
        template: (token.info && token.info.template) || "",
      });
    }
    if (username.value.trim()) data.username = username.value.trim();
    if (realm.value.trim()) data.realm = realm.value.trim();
    if (state.value) data.rollout_state = state.value;
    return data;
  }

  function verdicts(answer) {
    const only = handlerSelect.value ? Number(handlerSelect.value) : null;
    const keep = (item) => only === null || item.id === only;
    const items = [];
    for (const matched of answer.matched.filter(keep)) {
      const mails = answer.mails.filter((mail) => mail.handler_id === matched.id);
      const name = h("strong", {}, matched.name);
      const said = mails.map((mail, index) => {
        const lead = index === 0 ? [name, " matches and "] : ["It "];
        if (mail.problem) {
          return h("p", {}, lead, `would not mail ${mail.to || mail.recipient}: ${mail.problem}.`);
        }
        return [h("p", {}, lead, `would ${index === 0 ? "" : "also "}mail ${mail.to}`,
          mail.smtpserver ? ` through ${mail.smtpserver}` : "",
          ` with subject “${mail.subject}” and this text:`),
        h("pre", { class: "mail-body" }, mail.body)];
      });
      items.push(h("li", { class: "verdict verdict-match", dataset: { handler: String(matched.id) } },
        mails.length ? said : h("p", {}, name, " matches but sends no mail (no recipient).")));
    }
    for (const missed of answer.not_matched.filter(keep)) {
      items.push(h("li", { class: "verdict verdict-miss", dataset: { handler: String(missed.id) } },
        h("p", {}, h("strong", {}, missed.name),
          ` does not match because ${mismatchText(missed.reason)}.`)));
    }
    if (items.length === 0) return h("p", {}, "No handler to try.");
    return h("ul", { class: "verdicts" }, items);
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearErrors(form);
    const submit = form.querySelector("button[type=submit]");
    submit.disabled = true;
    try {
      const data = await sampleData();
      const answer = await call("POST", "/event/test", { json: { event: eventSelect.value, data } });
      replace(results, h("h3", {}, `What ${eventSelect.value} would do`), verdicts(answer));
      const matched = results.querySelectorAll(".verdict-match").length;
      const tried = results.querySelectorAll(".verdict").length;
      summary.textContent = `${tried} handler${tried === 1 ? "" : "s"} tried: ${matched} ` +
        `match${matched === 1 ? "es" : ""}.`;
    } catch (failure) {
      if (failure instanceof ApiFailure && failure.unauthenticated) return;
      replace(results);
      summary.textContent = "";
      showError(form, failure);
    } finally {
      submit.disabled = false;
    }
  });
  return undefined;
}
