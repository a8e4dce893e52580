// Enroll by uploading a request: paste or choose a CSR (PEM or DER), see what it says, send it.
import { call } from "../api.js";
import { clearErrors, field, fileAsPem, h, replace } from "../dom.js";
import {
  caChoice, csrFacts, loadConnectors, outcomeNode, ownerField, showRefusal,
} from "../enroll_form.js";

const CSR_ALIASES = { csr: "request", request_file: "request" };

export default async function render(screen, ctx) {
  const connectors = await loadConnectors();
  const owner = ownerField(ctx.session);
  const choice = caChoice(connectors);
  const request = h("textarea", {
    name: "request", rows: 10, spellcheck: "false", autocomplete: "off",
    placeholder: "-----BEGIN CERTIFICATE REQUEST-----",
  });
  const requestFile = h("input", { type: "file", name: "request_file", accept: ".csr,.pem,.der,.req" });
  const attestationFile = h("input", {
    type: "file", name: "attestation", accept: ".pem,.crt,.cer",
  });
  const review = h("section", { class: "review", "aria-live": "polite" });
  const submit = h("button", { type: "submit", disabled: true }, "Send the request");
  const check = h("button", { type: "button", class: "secondary" }, "Show what it says");
  const outcome = h("div", { class: "outcome-slot" });
  const form = h("form", { class: "card", novalidate: true },
    owner && owner.node,
    field("Certificate request (PEM)", request,
      "Paste the PKCS#10 request, or choose its file below.").wrap,
    field("…or choose the request file (PEM or DER)", requestFile).wrap,
    field("Attestation (optional): the key's attestation certificate chain, PEM",
      attestationFile, "Only where your realm asks for one.").wrap,
    choice.node,
    review,
    h("div", { class: "actions" }, check, submit));
  replace(screen, form, outcome);

  // The text the shown review belongs to: sending needs a review of what is sent.
  let reviewed = null;
  let attestation = "";

  async function showReview() {
    clearErrors(form);
    reviewed = null;
    submit.disabled = true;
    const text = request.value.trim();
    if (!text) {
      replace(review);
      showRefusal(form, { field: "request", message: "request: paste a CSR or choose its file" });
      return false;
    }
    try {
      const decoded = await call("POST", "/certificate/decode", { json: { csr: text } });
      if (request.value.trim() !== text) return false; // changed meanwhile
      replace(review, h("h2", {}, "What the request says"), csrFacts(decoded),
        h("p", { class: "hint" }, "The CA decides what the certificate says, following the template."));
      reviewed = text;
      submit.disabled = choice.empty;
      return true;
    } catch (failure) {
      replace(review);
      showRefusal(form, failure, CSR_ALIASES);
      return false;
    }
  }

  request.addEventListener("input", () => {
    if (reviewed !== null && request.value.trim() !== reviewed) {
      reviewed = null;
      submit.disabled = true;
      replace(review, h("p", { class: "hint" }, "Changed: show what it says again before sending."));
    }
  });
  request.addEventListener("change", () => { if (request.value.trim()) showReview(); });
  check.addEventListener("click", showReview);
  requestFile.addEventListener("change", async () => {
    const [file] = requestFile.files;
    if (!file) return;
    request.value = await fileAsPem(file, "CERTIFICATE REQUEST");
    await showReview();
  });
  attestationFile.addEventListener("change", async () => {
    const [file] = attestationFile.files;
    attestation = file ? await fileAsPem(file, "CERTIFICATE") : "";
  });

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (reviewed === null || reviewed !== request.value.trim()) {
      await showReview();
      return;
    }
    clearErrors(form);
    submit.disabled = true;
    replace(outcome, h("p", { class: "loading", role: "status" }, "Sending the request…"));
    try {
      const body = {
        type: "certificate", request: reviewed, ...choice.values(),
        ...(owner ? owner.values() : {}),
      };
      if (attestation) body.attestation = attestation;
      const answer = await call("POST", "/token/init", { json: body, full: true });
      replace(outcome, await outcomeNode(answer.detail));
      ctx.announce(`Request sent: certificate ${answer.detail.serial} is ${answer.detail.rollout_state}.`);
    } catch (failure) {
      replace(outcome);
      showRefusal(form, failure, CSR_ALIASES);
    } finally {
      submit.disabled = reviewed === null;
    }
  });
  return undefined;
}
