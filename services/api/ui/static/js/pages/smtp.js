// SMTP servers: the configured servers, and a test mail sent now through one of them.
import { ApiFailure, call } from "../api.js";
import { clearErrors, field, h, replace, showError } from "../dom.js";
import { table } from "../table.js";

/** How a server is reached: "STARTTLS", "implicit TLS" or "plain (no TLS)". */
export function tlsText(server) {
  if (server.implicit_tls || String(server.server).startsWith("smtps://")) return "implicit TLS";
  return server.tls ? "STARTTLS" : "plain (no TLS)";
}

export default async function render(main) {
  const servers = Object.values(await call("GET", "/smtpserver/"));
  const rows = servers.map((server) => [
    server.identifier,
    server.server,
    String(server.port),
    tlsText(server),
    server.sender,
    server.username ? `${server.username}${server.password_set ? " (password set)" : ""}` : "none",
    server.description || "",
  ]);
  const list = table("SMTP servers",
    ["Name", "Server", "Port", "Security", "Sender", "Login", "Description"], rows,
    { empty: "No SMTP servers are configured." });

  const serverSelect = h("select", { name: "identifier" },
    servers.map((server) => h("option", { value: server.identifier }, server.identifier)));
  const recipient = h("input", { name: "recipient", type: "email", autocomplete: "email",
    required: true });
  const outcome = h("p", { class: "said", role: "status" });
  const submit = h("button", { type: "submit" }, "Send test mail");
  const form = h("form", { class: "card short-fields", novalidate: true,
    "aria-labelledby": "test-mail-title" },
    h("h2", { id: "test-mail-title" }, "Send a test mail"),
    h("p", {}, "The mail is sent now, not queued: the answer is the server's own."),
    field("Through SMTP server", serverSelect).wrap,
    field("To address", recipient).wrap,
    h("div", { class: "actions" }, submit),
    outcome);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearErrors(form);
    outcome.textContent = "";
    outcome.className = "said";
    const to = recipient.value.trim();
    if (!to) {
      showError(form, new ApiFailure(400, 0, "recipient: type the address to send to"));
      return;
    }
    submit.disabled = true;
    outcome.textContent = `Sending through ${serverSelect.value}…`;
    try {
      const answer = await call("POST", "/smtpserver/send_test_email",
        { json: { identifier: serverSelect.value, recipient: to }, full: true });
      const detail = answer.detail || {};
      if (answer.result.value === true) {
        outcome.textContent = `Sent to ${to}: ${detail.message || "accepted"}.`;
        outcome.classList.add("said-ok");
      } else {
        const kind = detail.permanent ? "refused it" : "could not take it now";
        outcome.textContent = `Not sent: ${serverSelect.value} ${kind}: ${detail.message || "no reason given"}.`;
        outcome.classList.add("said-failed");
      }
    } catch (failure) {
      if (failure instanceof ApiFailure && failure.unauthenticated) return;
      outcome.textContent = "";
      showError(form, failure);
    } finally {
      submit.disabled = false;
    }
  });
  if (servers.length === 0) {
    submit.disabled = true;
    outcome.textContent = "Add an SMTP server (POST /smtpserver/<name>) to send a test mail.";
  }
  replace(main, h("h1", {}, "SMTP servers"), list, form);
  return undefined;
}
