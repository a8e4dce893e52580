// Pending requests: per CA, the requests awaiting a CA manager's decision; approve, or deny
// with a reason. The list is asked again every few seconds, so new requests show up by themselves.
import { ApiFailure, call } from "../api.js";
import { clearErrors, confirmDialog, facts, field, h, replace, showError, when } from "../dom.js";

/** How often the lists are asked again, in milliseconds. */
const POLL_MS = 3000;

/** "5 minutes ago" for an ISO time (relative to *now*, in ms). */
export function ago(iso, now = Date.now()) {
  const then = new Date(iso).getTime();
  if (Number.isNaN(then)) return "";
  const seconds = Math.max(0, Math.round((now - then) / 1000));
  const units = [["day", 86400], ["hour", 3600], ["minute", 60]];
  for (const [unit, size] of units) {
    if (seconds >= size) {
      const n = Math.floor(seconds / size);
      return `${n} ${unit}${n === 1 ? "" : "s"} ago`;
    }
  }
  return "less than a minute ago";
}

/** The owner as user@realm. */
function ownerOf(request) {
  return request.realm ? `${request.username}@${request.realm}` : request.username;
}

/** Who asked ("admin:admin", "user:alice"), in words. */
function requesterText(request) {
  const requester = String(request.requester || "");
  const [role, ...rest] = requester.split(":");
  const name = rest.join(":");
  if (!name) return requester || "unknown";
  if (role === "admin") return `${name} (administrator)`;
  if (role === "user") {
    // A user only ever asks for themselves, in their own realm.
    const login = name.includes("@") || !request.realm ? name : `${name}@${request.realm}`;
    return login === ownerOf(request) ? `${login} (the owner)` : `${login} (a user)`;
  }
  return requester;
}

/** The CSR's key in words: "EC P-256 (256 bits)", "RSA 2048 bits". */
function keyText(csr) {
  if (!csr.key_type) return "";
  const type = String(csr.key_type).toUpperCase();
  if (csr.curve) return `${type} ${csr.curve} (${csr.key_size} bits)`;
  return csr.key_size ? `${type} ${csr.key_size} bits` : type;
}

function attestationText(request) {
  if (!request.attestation_verified) return "not verified (no attestation was checked)";
  const by = request.attestation_issuer ? `, issued by ${request.attestation_issuer}` : "";
  return `verified: ${request.attestation_subject || "attested"}${by}`;
}

/** What a decision's answer means, in words. */
export function outcomeText(decision, request, detail) {
  const who = `${ownerOf(request)}'s request ${request.serial}`;
  const state = detail.rollout_state;
  if (state === "enrolled") return `Approved: the certificate for ${who} was issued.`;
  if (state === "denied") {
    return `Denied: ${who} is denied.${detail.reason ? ` Reason given: ${detail.reason}` : ""}`;
  }
  if (state === "failed") {
    return `Approved, but the CA refused to issue ${who}: ${detail.reason || "no reason given"}.`;
  }
  const verb = decision === "approve" ? "Approved" : "Denied";
  return `${verb}: ${who} is ${state || "being processed"}; the CA has not answered yet. ` +
    "The owner's list will show the outcome.";
}

export default async function render(main, ctx) {
  const outcomes = h("ul", { class: "decisions", "aria-label": "Decisions taken" });
  const status = h("p", { class: "muted pending-count", role: "status" });
  const sections = h("div", {});
  const noConnectors = h("p", { hidden: true }, "There are no CA connectors.");
  replace(main,
    h("h1", {}, "Pending requests"),
    h("p", {}, "Requests held for a CA manager's decision. Check who asks and what the request " +
      "says, then approve it (the CA issues the certificate) or deny it with a reason."),
    status,
    outcomes,
    noConnectors,
    sections);

  // Per CA, the cards shown by request id, so that a refresh keeps what is typed in them.
  const cards = new Map();
  const lists = new Map();
  let stopped = false;
  let timer = null;
  let lastCount = null;
  // Each refresh has a number; an older one still running stops, so a stale list never wins.
  let generation = 0;

  function remember(text, failed) {
    outcomes.prepend(h("li", { class: failed ? "said said-failed" : "said said-ok", tabindex: "-1" },
      text));
    while (outcomes.children.length > 10) outcomes.lastElementChild.remove();
    ctx.announce(text);
  }

  async function decide(ca, request, decision, form, reasonInput) {
    clearErrors(form);
    const reason = reasonInput.value.trim();
    if (decision === "deny" && !reason) {
      showError(form, new ApiFailure(400, 0, "reason: say why the request is denied"));
      return;
    }
    const who = `${ownerOf(request)} (${request.serial}, template ${request.template || "default"})`;
    const confirmed = decision === "approve"
      ? await confirmDialog("Approve this request?",
        `The CA ${ca} will issue a certificate for ${who}.`, "Approve")
      : await confirmDialog("Deny this request?",
        `The request of ${who} will be denied with the reason: ${reason}`, "Deny");
    if (!confirmed) return;
    const buttons = form.querySelectorAll("button");
    for (const button of buttons) button.disabled = true;
    const path = `/ca/${encodeURIComponent(ca)}/requests/${encodeURIComponent(request.request_id)}/${decision}`;
    try {
      const answer = await call("POST", path,
        decision === "deny" ? { json: { reason }, full: true } : { full: true });
      const detail = (answer.detail) || {};
      remember(outcomeText(decision, request, detail), detail.rollout_state === "failed");
    } catch (failure) {
      if (failure instanceof ApiFailure && failure.unauthenticated) return;
      showError(form, failure);
      remember(`Not ${decision === "approve" ? "approved" : "denied"}: ${failure.message}`, true);
      for (const button of buttons) button.disabled = false;
    }
    await refreshSaying();
    // The decided card is gone with the button that had the focus: keep it on the outcome.
    if (!document.activeElement || document.activeElement === document.body) {
      outcomes.firstElementChild?.focus();
    }
  }

  function card(ca, request) {
    const csr = request.csr || {};
    const reasonInput = h("textarea", { name: `reason-${request.request_id}`, rows: "3",
      maxlength: "1000", class: "reason" });
    const reasonField = field("Reason for denying", reasonInput,
      "Required to deny; the owner sees it.");
    reasonField.wrap.dataset.field = "reason";
    const form = h("form", { class: "decision", novalidate: true },
      reasonField.wrap,
      h("div", { class: "actions" },
        h("button", { type: "button", onclick: () => decide(ca, request, "approve", form, reasonInput) },
          "Approve"),
        h("button", { type: "button", class: "danger",
          onclick: () => decide(ca, request, "deny", form, reasonInput) }, "Deny")));
    form.addEventListener("submit", (event) => event.preventDefault());
    const since = h("span", { class: "since" });
    const updateSince = () => {
      since.textContent = `${when(request.time)} (${ago(request.time)})`;
    };
    updateSince();
    const element = h("article", { class: "card request", dataset: { request: request.request_id } },
      h("h3", {}, `${ownerOf(request)}: `, h("a", { href: `#/token/${encodeURIComponent(request.serial)}` },
        request.serial)),
      facts([
        ["Owner", ownerOf(request)],
        ["Requested by", requesterText(request)],
        ["Template", request.template || "default"],
        ["Subject in the CSR", csr.error ? `unreadable: ${csr.error}` : csr.subject || "(empty)"],
        ["SANs in the CSR", csr.sans && csr.sans.length ? csr.sans : "none"],
        ["Key", keyText(csr)],
        ["Signature hash", csr.signature_hash || ""],
        ["Key attestation", attestationText(request)],
        ["Waiting since", since],
      ]),
      form);
    return { element, updateSince };
  }

  function section(ca) {
    const list = h("div", { class: "requests" });
    const empty = h("p", { class: "muted" }, "No requests wait for a decision.");
    const headingId = `ca-${ca.replace(/[^A-Za-z0-9_-]/g, "_")}`;
    const element = h("section", { "aria-labelledby": headingId },
      h("h2", { id: headingId }, `CA ${ca}`), empty, list);
    return { element, list, empty };
  }

  async function refresh() {
    if (stopped) return;
    generation += 1;
    const mine = generation;
    const connectors = await call("GET", "/caconnector/");
    if (mine !== generation) return;
    const names = connectors.map((c) => c.connectorname);
    let total = 0;
    for (const name of names) {
      if (!lists.has(name)) {
        const made = section(name);
        lists.set(name, made);
        sections.append(made.element);
      }
    }
    for (const [name, made] of lists) {
      if (!names.includes(name)) {
        made.element.remove();
        lists.delete(name);
      }
    }
    noConnectors.hidden = names.length > 0;
    for (const name of names) {
      const value = await call("GET", `/ca/${encodeURIComponent(name)}/requests`,
        { query: { status: "pending" } });
      if (mine !== generation) return;
      // Only requests held by certtoken can be decided here; the CA decides its own.
      const held = value.requests.filter((r) => r.held_by === "certtoken");
      const made = lists.get(name);
      const seen = new Set();
      for (const request of held) {
        const key = `${name}/${request.request_id}`;
        seen.add(key);
        let shown = cards.get(key);
        if (!shown) {
          shown = card(name, request);
          cards.set(key, shown);
          made.list.append(shown.element);
        } else {
          shown.updateSince();
        }
      }
      for (const [key, shown] of cards) {
        if (key.startsWith(`${name}/`) && !seen.has(key)) {
          shown.element.remove();
          cards.delete(key);
        }
      }
      made.empty.hidden = held.length > 0;
      total += held.length;
    }
    const text = total === 1 ? "1 request waits for a decision." :
      `${total} requests wait for a decision.`;
    // Said again only when it changes, so that screen readers are not told every few seconds.
    if (total !== lastCount) status.textContent = text;
    lastCount = total;
  }

  /** Refresh, saying in the status line when it could not be done. */
  async function refreshSaying() {
    try {
      await refresh();
    } catch (failure) {
      if (failure instanceof ApiFailure && failure.unauthenticated) return;
      status.textContent = `The list could not be refreshed: ${failure.message}`;
      lastCount = null;
    }
  }

  async function poll() {
    await refreshSaying();
    if (!stopped) timer = setTimeout(poll, POLL_MS);
  }

  await refresh();
  timer = setTimeout(poll, POLL_MS);
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}
