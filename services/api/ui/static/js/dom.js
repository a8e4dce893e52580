// Building the page from data: elements and text nodes only, never HTML strings.

/** An element: h("p", {class: "x", onclick: fn}, "text", child, [more]). */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") {
      el.addEventListener(key.slice(2), value);
    } else if (key === "class") {
      el.className = value;
    } else if (key === "dataset") {
      Object.assign(el.dataset, value);
    } else if (value === true) {
      el.setAttribute(key, "");
    } else {
      el.setAttribute(key, String(value));
    }
  }
  append(el, children);
  return el;
}

/** Append children: nodes, strings (as text) and arrays of them; null is skipped. */
export function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

/** Replace everything in *el* with *children*. */
export function replace(el, ...children) {
  el.replaceChildren();
  return append(el, children);
}

let uid = 0;
/** A fresh id for label/for and aria-describedby pairs. */
export function newId(prefix = "f") {
  uid += 1;
  return `${prefix}-${uid}`;
}

/** A labelled form control with a place for its error: {wrap, input, error}. */
export function field(label, control, hint) {
  const id = control.id || newId();
  control.id = id;
  const error = h("p", { class: "field-error", id: `${id}-error`, hidden: true });
  const described = [error.id];
  let hintEl = null;
  if (hint) {
    hintEl = h("p", { class: "hint", id: `${id}-hint` }, hint);
    described.unshift(hintEl.id);
  }
  control.setAttribute("aria-describedby", described.join(" "));
  const wrap = h("div", { class: "field", dataset: { field: control.name || "" } },
    h("label", { for: id }, label), control, hintEl, error);
  return { wrap, input: control, error };
}

/** Show *message* next to the field named *name* in *form*; false when there is none. */
export function showFieldError(form, name, message) {
  const wrap = form.querySelector(`.field[data-field="${CSS.escape(name)}"]`);
  if (!wrap) return false;
  const error = wrap.querySelector(".field-error");
  const control = wrap.querySelector("input, select, textarea");
  error.textContent = message;
  error.hidden = false;
  if (control) control.setAttribute("aria-invalid", "true");
  return true;
}

/** Remove every field error shown in *form*. */
export function clearErrors(form) {
  for (const error of form.querySelectorAll(".field-error")) {
    error.textContent = "";
    error.hidden = true;
  }
  for (const control of form.querySelectorAll("[aria-invalid]")) {
    control.removeAttribute("aria-invalid");
  }
  const general = form.querySelector(".form-error");
  if (general) {
    general.textContent = "";
    general.hidden = true;
  }
}

/**
 * Show an API refusal in words: next to the field it names ("field: reason"), else in the
 * form's general error line (a .form-error element, made when missing).
 */
export function showError(form, failure) {
  const message = failure.message || String(failure);
  if (failure.field && showFieldError(form, failure.field, message)) {
    form.querySelector(`.field[data-field="${CSS.escape(failure.field)}"] input,
      .field[data-field="${CSS.escape(failure.field)}"] select,
      .field[data-field="${CSS.escape(failure.field)}"] textarea`)?.focus();
    return;
  }
  let general = form.querySelector(".form-error");
  if (!general) {
    general = h("p", { class: "form-error", role: "alert" });
    form.prepend(general);
  }
  general.textContent = message;
  general.hidden = false;
}

/** Ask for confirmation in a modal dialog; resolves true when confirmed. */
export function confirmDialog(title, text, confirmLabel = "Confirm", extra = null) {
  return new Promise((resolve) => {
    const titleId = newId("dlg");
    const ok = h("button", { type: "submit", class: "danger", value: "ok" }, confirmLabel);
    const cancel = h("button", { type: "button", value: "cancel" }, "Cancel");
    const dialog = h("dialog", { "aria-labelledby": titleId, class: "dialog" },
      h("form", { method: "dialog" },
        h("h2", { id: titleId }, title),
        h("p", {}, text),
        extra,
        h("div", { class: "actions" }, ok, cancel)));
    cancel.addEventListener("click", () => dialog.close("cancel"));
    dialog.addEventListener("close", () => {
      dialog.remove();
      resolve(dialog.returnValue === "ok");
    });
    document.body.append(dialog);
    dialog.showModal();
    ok.focus();
  });
}

/** Offer *data* (bytes or text) as a file download named *filename*. */
export function download(filename, data, type) {
  const url = URL.createObjectURL(new Blob([data], { type }));
  const link = h("a", { href: url, download: filename, hidden: true });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

/** Bytes of a base64 text. */
export function base64Bytes(text) {
  const raw = atob(text.replace(/\s+/g, ""));
  const bytes = new Uint8Array(raw.length);
  for (let i = 0; i < raw.length; i += 1) bytes[i] = raw.charCodeAt(i);
  return bytes;
}

/** The DER bytes of the first PEM block in *pem*. */
export function pemToDer(pem) {
  const body = pem.replace(/-----BEGIN [^-]+-----/, "").replace(/-----END [^-]+-----[\s\S]*/, "");
  return base64Bytes(body);
}

/** PEM text of DER *bytes* under *label* (e.g. "CERTIFICATE REQUEST"). */
export function derToPem(bytes, label) {
  let raw = "";
  for (const byte of bytes) raw += String.fromCharCode(byte);
  const lines = btoa(raw).match(/.{1,64}/g) || [];
  return `-----BEGIN ${label}-----\n${lines.join("\n")}\n-----END ${label}-----\n`;
}

/** A file's content as PEM text: PEM files as they are, DER files wrapped under *label*. */
export async function fileAsPem(file, label) {
  const bytes = new Uint8Array(await file.arrayBuffer());
  const text = new TextDecoder("utf-8", { fatal: false }).decode(bytes);
  if (text.includes("-----BEGIN")) return text;
  return derToPem(bytes, label);
}

/** A date/time value as the browser's local text; "" for none. */
export function when(value) {
  if (!value) return "";
  const date = new Date(value);
  return Number.isNaN(date.getTime()) ? String(value) : date.toLocaleString();
}

/** A state badge: the token's certtoken state in words and colour (never colour alone). */
export function badge(state) {
  return h("span", { class: `badge badge-${state || "unknown"}` }, state || "unknown");
}

/** A definition list of [term, value] pairs; empty values are left out. */
export function facts(pairs) {
  const list = h("dl", { class: "facts" });
  for (const [term, value] of pairs) {
    if (value === undefined || value === null || value === "" ||
      (Array.isArray(value) && value.length === 0)) continue;
    list.append(h("dt", {}, term), h("dd", {}, Array.isArray(value) ? value.join(", ") : value));
  }
  return list;
}
