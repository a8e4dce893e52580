// A token as the owner's pages show it: its state in words, what a pending one waits for,
// and a watch that tells when a waiting token's state changes.
import { call } from "./api.js";
import { badge, h } from "./dom.js";

/** States that change without the owner doing anything. */
const WAITING = new Set(["submitted", "pending"]);
/** How often waiting tokens are asked about, in milliseconds. */
export const POLL_MS = 2000;

/** certtoken's own state of *token* (revoked included). */
export function stateOf(token) {
  return token.certtoken_state || token.rollout_state || "unknown";
}

/** Whether the owner waits for *token* (submitted or pending). */
export function isWaiting(token) {
  return WAITING.has(stateOf(token));
}

/** Disabled tokens are inactive without being revoked. */
export function isDisabled(token) {
  return token.active === false && stateOf(token) !== "revoked";
}

/** The state badge, with a second one when the token is disabled. */
export function stateBadges(token) {
  const badges = [badge(stateOf(token))];
  if (isDisabled(token)) badges.push(" ", badge("disabled"));
  return h("span", { class: "state-badges" }, badges);
}

/** The CA connector a token belongs to. */
export function caOf(token) {
  return (token.info && token.info.CA) || "";
}

/** What a waiting token waits for, or why it ended, in words; "" when there is nothing to say. */
export function stateText(token) {
  const info = token.info || {};
  const ca = caOf(token);
  const theCa = ca ? `the CA ${ca}` : "the CA";
  switch (stateOf(token)) {
    case "submitted":
      return `Sent to ${theCa}; waiting for its answer.`;
    case "pending":
      if (info.held_by === "certtoken") {
        return "Waiting for a CA manager's approval at certtoken.";
      }
      if (info.held_by === "ca") {
        return `Waiting for ${theCa} to issue it; certtoken asks it again from time to time.`;
      }
      return "Waiting for a decision.";
    case "denied":
      return info.reason ? `Denied: ${info.reason}` : "Denied.";
    case "failed":
      return info.reason ? `The CA refused it: ${info.reason}` : "The CA refused it.";
    case "revoked":
      return info.revocation_reason ? `Revoked (${info.revocation_reason}).` : "Revoked.";
    default:
      return "";
  }
}

/** The subject a token's certificate has, else the one its request asked for. */
export function subjectOf(token) {
  const info = token.info || {};
  return info.certificate_subject || info.subject || "";
}

/** One token by serial, without taking its PKCS#12 (looking is not a download); null if none. */
export async function fetchToken(serial) {
  const value = await call("GET", "/token/", { query: { serial, pkcs12: "false" } });
  return (value.tokens || [])[0] || null;
}

/** A sentence announcing that *token* changed from *before* to its state now. */
export function changeText(token, before) {
  const now = stateOf(token);
  const text = stateText(token);
  return `Certificate ${token.serial} is now ${now} (was ${before}).${text ? ` ${text}` : ""}`;
}

/**
 * Ask *load* (resolving a list of tokens) every POLL_MS while any of them waits; *onChange*
 * gets the fresh list and the tokens whose state changed. Returns the function that stops it.
 */
export function watchWaiting(initial, load, onChange) {
  let stopped = false;
  let timer = null;
  let known = new Map(initial.map((t) => [t.serial, stateOf(t)]));

  async function tick() {
    timer = null;
    if (stopped) return;
    let tokens;
    try {
      tokens = await load();
    } catch {
      // A failed look is tried again at the next tick; a lost login is the shell's business.
      tokens = null;
    }
    if (stopped) return;
    if (tokens) {
      const changed = tokens
        .filter((t) => known.has(t.serial) && known.get(t.serial) !== stateOf(t))
        .map((t) => ({ token: t, before: known.get(t.serial) }));
      known = new Map(tokens.map((t) => [t.serial, stateOf(t)]));
      if (changed.length) onChange(tokens, changed);
      if (!tokens.some(isWaiting)) return;
    }
    timer = setTimeout(tick, POLL_MS);
  }

  if (initial.some(isWaiting)) timer = setTimeout(tick, POLL_MS);
  return () => {
    stopped = true;
    if (timer) clearTimeout(timer);
  };
}
