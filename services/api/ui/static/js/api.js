// The API client: privacyIDEA's envelope, the login token in PI-Authorization, refusals as
// ApiFailure naming the field they concern. The token lives in this tab's sessionStorage (no
// cookie, so no request is ever sent with credentials the page did not add: no CSRF).

const TOKEN_KEY = "certtoken.session";
const AUTH_CODES = new Set([4031, 4033, 4304, 4305]);

/** An answer with result.status false (or a failed fetch): status, code, message, field. */
export class ApiFailure extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
    // certtoken's messages start with the field they concern: "csr: not a PEM CSR".
    const match = /^([A-Za-z_][\w.]*): /.exec(message || "");
    this.field = match ? match[1] : null;
  }

  /** The login is gone (expired, revoked, or never there). */
  get unauthenticated() {
    return this.status === 401 || AUTH_CODES.has(this.code);
  }
}

let onExpired = () => {};

/** What to do when the API says the login is no longer valid. */
export function whenExpired(handler) {
  onExpired = handler;
}

/** The stored session: {token, username, realm, role, rights, menus, logout_time}; or null. */
export function session() {
  try {
    return JSON.parse(sessionStorage.getItem(TOKEN_KEY) || "null");
  } catch {
    return null;
  }
}

/** Log in; stores and returns the session, or throws ApiFailure. */
export async function login(username, password) {
  const value = await call("POST", "/auth", { form: { username, password }, anonymous: true });
  const stored = {
    token: value.token,
    username: value.username,
    realm: value.realm || "",
    role: value.role,
    rights: value.rights || [],
    menus: value.menus || [],
    logout_time: value.logout_time || 0,
    since: Date.now(),
  };
  sessionStorage.setItem(TOKEN_KEY, JSON.stringify(stored));
  return stored;
}

/** Forget the session. */
export function logout() {
  sessionStorage.removeItem(TOKEN_KEY);
}

/**
 * Call the API: options {json, form, query, anonymous, full}. Resolves result.value (or the
 * whole body with full: true); throws ApiFailure on a refusal.
 */
export async function call(method, path, options = {}) {
  const headers = { Accept: "application/json" };
  const current = session();
  if (!options.anonymous && current) headers["PI-Authorization"] = current.token;
  let body;
  if (options.json !== undefined) {
    headers["Content-Type"] = "application/json";
    body = JSON.stringify(options.json);
  } else if (options.form !== undefined) {
    body = new URLSearchParams(options.form);
  }
  let url = path;
  if (options.query) {
    const query = new URLSearchParams();
    for (const [key, value] of Object.entries(options.query)) {
      if (value !== undefined && value !== null && value !== "") query.set(key, value);
    }
    const text = query.toString();
    if (text) url += `?${text}`;
  }
  let response;
  try {
    response = await fetch(url, { method, headers, body, credentials: "omit" });
  } catch {
    throw new ApiFailure(0, 0, "The server cannot be reached; check the connection and retry.");
  }
  let data = null;
  try {
    data = await response.json();
  } catch {
    throw new ApiFailure(response.status, response.status,
      `The server answered ${response.status} without a readable body.`);
  }
  const result = data && data.result;
  if (!response.ok || !result || result.status === false) {
    const error = (result && result.error) || {};
    const failure = new ApiFailure(response.status, error.code || response.status,
      error.message || `The server answered ${response.status}.`);
    if (failure.unauthenticated && !options.anonymous) onExpired(failure);
    throw failure;
  }
  return options.full ? data : result.value;
}
