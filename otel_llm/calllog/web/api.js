// The page's only way to the data: the JSON API under /api/v1/, with the key the user typed,
// kept in sessionStorage (this tab only; no cookie, no second auth path).
const KEY = "otel-llm-call-log-key";

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

export function getKey() {
  return sessionStorage.getItem(KEY);
}

export function setKey(key) {
  sessionStorage.setItem(KEY, key);
}

export function forgetKey() {
  sessionStorage.removeItem(KEY);
}

/** GET an API path with query parameters (empty values left out); the parsed JSON answer. */
export async function get(path, params = {}) {
  const url = new URL(path, window.location.origin);
  for (const [name, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== "") url.searchParams.set(name, value);
  }
  let response;
  try {
    response = await fetch(url, {
      headers: { Authorization: `Bearer ${getKey() || ""}`, Accept: "application/json" },
      cache: "no-store",
      credentials: "omit",
    });
  } catch (error) {
    throw new ApiError(0, `The call-log API could not be reached (${error.message}).`);
  }
  let body = null;
  try {
    body = await response.json();
  } catch {
    body = null;
  }
  if (!response.ok) throw new ApiError(response.status, explain(response, body));
  return body;
}

function explain(response, body) {
  const detail = body && body.error && typeof body.error.message === "string" ? body.error.message : "";
  switch (response.status) {
    case 401:
      return "401 Unauthorized: the API key was not accepted. Enter a valid key.";
    case 403:
      return `403 Forbidden: this key may not read that. ${detail}`;
    case 429: {
      const retry = response.headers.get("Retry-After");
      return `429 Too many requests: the rate limit of this key is reached${retry ? `; retry in ${retry} s` : ""}. ${detail}`;
    }
    default:
      return `The call log answered ${response.status}. ${detail}`;
  }
}

/** The page's configuration (the trace link template), served beside the page. */
export async function config() {
  const response = await fetch("/config.json", { cache: "no-store", credentials: "omit" });
  return response.ok ? response.json() : { trace_url: null };
}
