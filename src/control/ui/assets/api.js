// The console's only way out: calls to this daemon's /v1 API, same origin, with the JSON
// content type the API's cross-site defence requires on every state-changing call. The
// client certificate authenticates; nothing is kept in cookies or storage.

export class ApiError extends Error {
  constructor(status, body) {
    const e = (body && body.error) || {};
    super(e.message || `HTTP ${status}`);
    this.status = status;
    this.code = e.code || "";
    this.field = e.field || "";
  }
}

async function call(method, path, body) {
  const init = {
    method,
    credentials: "same-origin",
    cache: "no-store",
    redirect: "error",
    headers: { Accept: "application/json" },
  };
  if (method !== "GET") {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body === undefined ? {} : body);
  }
  const resp = await fetch(path, init);
  let parsed = null;
  try {
    parsed = await resp.json();
  } catch {
    parsed = null;
  }
  if (!resp.ok) throw new ApiError(resp.status, parsed);
  return { status: resp.status, body: parsed };
}

export const get = async (path) => (await call("GET", path)).body;
export const post = (path, body) => call("POST", path, body);
export const put = (path, body) => call("PUT", path, body);
export const patch = (path, body) => call("PATCH", path, body);
export const del = (path) => call("DELETE", path);

/// A path segment, percent-encoded.
export const seg = (s) => encodeURIComponent(s);

/// A query string from the given non-empty fields.
export function query(fields) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(fields)) {
    if (v !== undefined && v !== null && v !== "") q.set(k, String(v));
  }
  const s = q.toString();
  return s ? `?${s}` : "";
}
