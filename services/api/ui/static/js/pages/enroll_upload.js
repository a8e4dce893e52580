// Enroll by uploading a certificate whose key the owner holds: see what it says, then send it.
import { call } from "../api.js";
import { clearErrors, field, fileAsPem, h, replace, when } from "../dom.js";
import {
  certificateFacts, outcomeNode, ownerField, showRefusal,
} from "../enroll_form.js";

const ALIASES = { certificate_file: "certificate" };

export default async function render(screen, ctx) {
  const owner = ownerField(ctx.session);
  const certificate = h("textarea", {
    name: "certificate", rows: 10, spellcheck: "false", autocomplete: "off",
    placeholder: "-----BEGIN CERTIFICATE-----",
  });
  const certificateFile = h("input", {
    type: "file", name: "certificate_file", accept: ".pem,.crt,.cer,.der",
  });
  const review = h("section", { class: "review", "aria-live": "polite" });
  const check = h("button", { type: "button", class: "secondary" }, "Show what it says");
  const submit = h("button", { type: "submit", disabled: true }, "Upload the certificate");
  const outcome = h("div", { class: "outcome-slot" });
  const form = h("form", { class: "card", novalidate: true },
    owner && owner.node,
    field("Certificate (PEM)", certificate, "Paste it, or choose its file below.").wrap,
    field("…or choose the certificate file (PEM or DER)", certificateFile).wrap,
    review,
    h("div", { class: "actions" }, check, submit));
  replace(screen, form, outcome);

  let reviewed = null;

  async function showReview() {
    clearErrors(form);
    reviewed = null;
    submit.disabled = true;
    const text = certificate.value.trim();
    if (!text) {
      replace(review);
      showRefusal(form, {
        field: "certificate", message: "certificate: paste a certificate or choose its file",
      });
      return;
    }
    try {
      const decoded = await call("POST", "/certificate/decode", { json: { certificate: text } });
      if (certificate.value.trim() !== text) return;
      replace(review, h("h2", {}, "What the certificate says"), certificateFacts(decoded, when));
      reviewed = text;
      submit.disabled = false;
    } catch (failure) {
      replace(review);
      showRefusal(form, failure, ALIASES);
    }
  }

  certificate.addEventListener("input", () => {
    if (reviewed !== null && certificate.value.trim() !== reviewed) {
      reviewed = null;
      submit.disabled = true;
      replace(review, h("p", { class: "hint" }, "Changed: show what it says again before sending."));
    }
  });
  certificate.addEventListener("change", () => { if (certificate.value.trim()) showReview(); });
  check.addEventListener("click", showReview);
  certificateFile.addEventListener("change", async () => {
    const [file] = certificateFile.files;
    if (!file) return;
    certificate.value = await fileAsPem(file, "CERTIFICATE");
    await showReview();
  });

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (reviewed === null || reviewed !== certificate.value.trim()) {
      await showReview();
      return;
    }
    clearErrors(form);
    submit.disabled = true;
    replace(outcome, h("p", { class: "loading", role: "status" }, "Uploading…"));
    try {
      const body = { type: "certificate", certificate: reviewed, ...(owner ? owner.values() : {}) };
      const answer = await call("POST", "/token/init", { json: body, full: true });
      replace(outcome, await outcomeNode(answer.detail));
      ctx.announce(`Certificate uploaded: ${answer.detail.serial} is ${answer.detail.rollout_state}.`);
    } catch (failure) {
      replace(outcome);
      showRefusal(form, failure, ALIASES);
    } finally {
      submit.disabled = reviewed === null;
    }
  });
  return undefined;
}
