// The console's only way to the server: /api/v1 with the session cookie. Every state-changing
// request carries the CSRF token (X-CSRF-Token) read from the gw_csrf cookie; a 401 anywhere means
// the session ended (signed out elsewhere, expired, deactivated) and sends the page to sign-in.
export class ApiError extends Error {
  constructor(status, body) {
    super((body && body.error && body.error.message) || `HTTP ${status}`);
    this.status = status;
    this.body = body;
    this.code = body && body.error && body.error.code;
  }
}

let onSignedOut = () => {};
export function whenSignedOut(fn) { onSignedOut = fn; }

export function csrfToken() {
  const found = document.cookie.split("; ").find((c) => c.startsWith("gw_csrf="));
  return found ? decodeURIComponent(found.slice(8)) : "";
}

export async function api(method, path, { body, raw, query, headers, signedOutOk = false } = {}) {
  let url = "/api/v1" + path;
  if (query) {
    const params = new URLSearchParams();
    for (const [k, v] of Object.entries(query)) if (v !== undefined && v !== null && v !== "") params.set(k, v);
    const qs = params.toString();
    if (qs) url += "?" + qs;
  }
  const h = { Accept: "application/json", ...(headers || {}) };
  if (body !== undefined) h["Content-Type"] = "application/json";
  if (!["GET", "HEAD"].includes(method)) h["X-CSRF-Token"] = csrfToken();
  const resp = await fetch(url, { method, headers: h, credentials: "same-origin",
    body: raw !== undefined ? raw : body === undefined ? undefined : JSON.stringify(body) });
  const data = (resp.headers.get("Content-Type") || "").includes("json") ? await resp.json() : null;
  if (resp.status === 401 && !signedOutOk) onSignedOut();
  if (!resp.ok) throw new ApiError(resp.status, data);
  return data;
}

export const get = (path, query) => api("GET", path, { query });
export const post = (path, body, opts = {}) => api("POST", path, { body: body === undefined ? {} : body, ...opts });
