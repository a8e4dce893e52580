// What the three enrollment screens share: the owner (admins), the CA and template choice,
// what a CSR or certificate says, how a refusal and the outcome are shown.
import { call } from "./api.js";
import { facts, field, h, newId, replace, showError } from "./dom.js";
import { fetchToken, stateText, stateBadges } from "./token_info.js";

/** The CA connectors (with templates) the caller may enroll with; policy may leave one. */
export async function loadConnectors() {
  return (await call("GET", "/system/names/caconnector")) || [];
}

/** A field showing a value that cannot be chosen, with a place for its error. */
function fixedField(name, label, value, hint) {
  return h("div", { class: "field fixed-field", dataset: { field: name } },
    h("p", { class: "fixed-value" }, h("strong", {}, `${label}: `), value),
    hint ? h("p", { class: "hint" }, hint) : null,
    h("p", { class: "field-error", hidden: true }));
}

function select(name, options, chosen) {
  return h("select", { name },
    options.map((value) => h("option", { value, selected: value === chosen }, value)));
}

/**
 * The CA connector and template: a select where there is a choice, the name as text where
 * policy (or the configuration) leaves only one. {node, values(), empty}.
 */
export function caChoice(connectors) {
  const node = h("div", { class: "ca-choice" });
  if (!connectors.length) {
    node.append(h("p", { class: "form-error" },
      "No CA connector is available to you; ask an administrator."));
    return { node, values: () => ({}), empty: true };
  }
  const byName = new Map(connectors.map((c) => [c.connectorname, c]));
  let caSelect = null;
  const templateSlot = h("div", {});
  let templateSelect = null;
  let fixedTemplate = "";

  function current() {
    return caSelect ? caSelect.value : connectors[0].connectorname;
  }

  function showTemplates() {
    const names = Object.keys(byName.get(current())?.templates || {}).sort();
    templateSelect = null;
    fixedTemplate = "";
    if (names.length === 1) {
      fixedTemplate = names[0];
      replace(templateSlot, fixedField("template", "Template", names[0],
        "The only template you may use."));
    } else if (names.length > 1) {
      templateSelect = select("template", names, names.includes("default") ? "default" : names[0]);
      replace(templateSlot, field("Template", templateSelect,
        "What the certificate will say and how long it is valid.").wrap);
    } else {
      replace(templateSlot);
    }
  }

  if (connectors.length === 1) {
    node.append(fixedField("ca", "CA connector", connectors[0].connectorname,
      "The only CA connector you may use."));
  } else {
    caSelect = select("ca", connectors.map((c) => c.connectorname), connectors[0].connectorname);
    caSelect.addEventListener("change", showTemplates);
    node.append(field("CA connector", caSelect).wrap);
  }
  node.append(templateSlot);
  showTemplates();
  return {
    node,
    empty: false,
    values: () => ({
      ca: current(),
      template: templateSelect ? templateSelect.value : fixedTemplate,
    }),
  };
}

/** Admins enroll for a user: the owner field ("user@realm"); null for users. */
export function ownerField(session) {
  if (session.role !== "admin") return null;
  const input = h("input", {
    name: "user", autocomplete: "off", required: true, placeholder: "alice@corp",
  });
  const made = field("Owner (user@realm)", input, "The user the certificate is for.");
  return { node: made.wrap, values: () => ({ user: input.value.trim() }) };
}

/**
 * Show an API refusal in *form*, next to the field it names; *aliases* maps the API's field
 * names to the form's (e.g. {csr: "request"}); realm refusals belong to the owner field.
 */
export function showRefusal(form, failure, aliases = {}) {
  const all = { realm: "user", ...aliases };
  if (failure.field && all[failure.field]) {
    const shown = Object.create(failure);
    shown.field = all[failure.field];
    shown.message = failure.message;
    showError(form, shown);
    return;
  }
  showError(form, failure);
}

// Curves as people name them (NIST), with the name the certificate uses after it.
const CURVES = { secp256r1: "P-256", secp384r1: "P-384", secp521r1: "P-521" };

function keyText(decoded) {
  if (!decoded.key_type) return "";
  if (decoded.curve) {
    const known = CURVES[decoded.curve];
    return `${decoded.key_type.toUpperCase()} ${known ? `${known} (${decoded.curve})` : decoded.curve}`;
  }
  if (decoded.key_size) return `${decoded.key_type.toUpperCase()} ${decoded.key_size} bits`;
  return decoded.key_type.toUpperCase();
}

/** What a decoded CSR says, as a definition list. */
export function csrFacts(decoded) {
  return facts([
    ["Subject", decoded.subject || "(empty)"],
    ["Alternative names", decoded.sans || []],
    ["Key", keyText(decoded)],
    ["Signature hash", (decoded.signature_hash || "").toUpperCase()],
  ]);
}

/** What a decoded certificate says, as a definition list. */
export function certificateFacts(decoded, when) {
  return facts([
    ["Subject", decoded.subject || "(empty)"],
    ["Alternative names", decoded.sans || []],
    ["Issuer", decoded.issuer],
    ["Valid from", when(decoded.not_before)],
    ["Valid until", when(decoded.not_after)],
    ["Serial number", decoded.serial],
    ["SHA-256 fingerprint", decoded.sha256_fingerprint],
    ["Key", keyText(decoded)],
    ["Key usage", (decoded.key_usage || []).map((usage) => usage.replace(/_/g, " "))],
    ["Extended key usage", decoded.extended_key_usage || []],
    ["CA certificate", decoded.is_ca ? "yes" : ""],
  ]);
}

/**
 * The outcome of POST /token/init in words: enrolled (with a link), waiting (and for what),
 * or refused (with the reason). *extra* nodes go inside (e.g. the PKCS#12 download).
 */
export async function outcomeNode(detail, extra = null) {
  let token = null;
  try {
    token = await fetchToken(detail.serial);
  } catch {
    token = null; // the answer itself says enough
  }
  const state = detail.rollout_state;
  const view = token || {
    serial: detail.serial, rollout_state: state, certtoken_state: state,
    info: { reason: detail.reason || "" },
  };
  const link = h("a", { href: `#/token/${encodeURIComponent(detail.serial)}` },
    `Certificate ${detail.serial}`);
  let title;
  let words;
  if (state === "enrolled") {
    title = "Enrolled";
    words = h("p", {}, link, " is issued.");
  } else if (state === "pending" || state === "submitted") {
    title = "Waiting";
    words = h("p", {}, link, ` is ${state}. ${stateText(view)}`);
  } else {
    title = "Not issued";
    words = h("p", { class: "form-error" }, link, ` is ${state}. ${stateText(view)}`);
  }
  return h("section", { class: "card outcome", "aria-labelledby": "outcome-title" },
    h("h2", { id: "outcome-title" }, title, " ", stateBadges(view)),
    words, extra);
}

/** A secret shown once, with a copy button (a selection to copy by hand where not allowed). */
export function secretWithCopy(label, text, announce, copyLabel = "Copy") {
  const id = newId("secret");
  const value = h("code", { class: "secret", id }, text);
  const button = h("button", { type: "button", class: "secondary" }, copyLabel);
  button.addEventListener("click", async () => {
    try {
      await navigator.clipboard.writeText(text);
      announce(`${label} copied.`);
    } catch {
      window.getSelection().selectAllChildren(value);
      announce(`${label} selected: press Ctrl+C (or ⌘+C) to copy it.`);
    }
  });
  return h("div", { class: "secret-row" },
    h("p", { class: "field-label", id: `${id}-label` }, label),
    value, button);
}
