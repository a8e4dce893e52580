// Enroll with a key the server generates: the PKCS#12 file and its password, offered once.
import { call } from "../api.js";
import { base64Bytes, clearErrors, download, field, h, replace, showError } from "../dom.js";
import {
  caChoice, loadConnectors, outcomeNode, ownerField, secretWithCopy, showRefusal,
} from "../enroll_form.js";

// The key types POST /token/init accepts as keytype (shared/pki.py KEY_TYPES).
const KEY_TYPES = [
  ["rsa-2048", "RSA 2048 bits"],
  ["rsa-3072", "RSA 3072 bits"],
  ["rsa-4096", "RSA 4096 bits"],
  ["ec-p256", "EC P-256"],
  ["ec-p384", "EC P-384"],
];
export const PKCS12_TYPE = "application/x-pkcs12";

/** Save base64 DER *pkcs12* as <serial>.p12. */
export function savePkcs12(serial, pkcs12) {
  download(`${serial}.p12`, base64Bytes(pkcs12), PKCS12_TYPE);
}

/** The download button for an issued token: the answer's PKCS#12, else the download route. */
function downloadPart(detail, announce) {
  let bytes = detail.pkcs12 || null;
  const button = h("button", { type: "button" }, `Download ${detail.serial}.p12`);
  const part = h("form", { class: "download-part" }, h("div", { class: "actions" }, button));
  button.addEventListener("click", async () => {
    clearErrors(part);
    try {
      if (!bytes) {
        const value = await call("GET", `/token/${encodeURIComponent(detail.serial)}/pkcs12`);
        bytes = value.pkcs12;
      }
      savePkcs12(detail.serial, bytes);
      announce(`${detail.serial}.p12 downloaded.`);
    } catch (failure) {
      showError(part, failure);
    }
  });
  return part;
}

function passwordPart(detail, pinGiven, announce) {
  if (detail.pkcs12_password) {
    return h("div", { class: "once" },
      secretWithCopy("PKCS#12 password", detail.pkcs12_password, announce,
        "Copy the password"),
      h("p", { class: "hint" },
        "Shown only now: keep it with the file. certtoken cannot show it again."));
  }
  return pinGiven ? h("p", {}, "The PKCS#12 file is protected by the PIN you chose.") : null;
}

export default async function render(screen, ctx) {
  const connectors = await loadConnectors();
  const owner = ownerField(ctx.session);
  const choice = caChoice(connectors);
  const keytype = h("select", { name: "keytype" },
    KEY_TYPES.map(([value, label]) => h("option", { value }, label)));
  const pin = h("input", { type: "password", name: "pin", autocomplete: "new-password" });
  const submit = h("button", { type: "submit", disabled: choice.empty }, "Generate the key");
  const outcome = h("div", { class: "outcome-slot" });
  const form = h("form", { class: "card", novalidate: true },
    owner && owner.node,
    field("Key type", keytype).wrap,
    field("PIN for the PKCS#12 file (optional)", pin,
      "Without a PIN, certtoken makes a password and shows it once.").wrap,
    choice.node,
    h("div", { class: "actions" }, submit));
  replace(screen, form, outcome);

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearErrors(form);
    submit.disabled = true;
    replace(outcome, h("p", { class: "loading", role: "status" }, "Generating the key…"));
    const pinGiven = Boolean(pin.value);
    try {
      const body = {
        type: "certificate", genkey: 1, keytype: keytype.value, ...choice.values(),
        ...(owner ? owner.values() : {}),
      };
      if (pinGiven) body.pin = pin.value;
      const answer = await call("POST", "/token/init", { json: body, full: true });
      pin.value = "";
      const detail = answer.detail;
      const state = detail.rollout_state;
      let extra;
      if (state === "enrolled") {
        extra = h("div", {}, downloadPart(detail, ctx.announce),
          passwordPart(detail, pinGiven, ctx.announce));
      } else if (state === "pending" || state === "submitted") {
        extra = h("div", {},
          h("p", {}, "After approval, download the PKCS#12 file on the certificate's details page."),
          passwordPart(detail, pinGiven, ctx.announce));
      } else {
        extra = null;
      }
      replace(outcome, await outcomeNode(detail, extra));
      ctx.announce(`Key generated: certificate ${detail.serial} is ${state}.`);
    } catch (failure) {
      replace(outcome);
      showRefusal(form, failure);
    } finally {
      submit.disabled = choice.empty;
    }
  });
  return undefined;
}
