// Calls to the service's own API. Every call sends the tab's key (session storage) as
// `Authorization: Bearer`; every failure becomes an ApiError carrying the API's error code and
// message, so the page can always say what went wrong.

const KEY_STORAGE = "rag.apiKey";

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }

  describe() {
    return `${this.code}: ${this.message}`;
  }
}

export function storedKey() {
  return sessionStorage.getItem(KEY_STORAGE) || "";
}

export function storeKey(key) {
  sessionStorage.setItem(KEY_STORAGE, key);
}

export function forgetKey() {
  sessionStorage.removeItem(KEY_STORAGE);
}

function headers(extra = {}) {
  const key = storedKey();
  return key ? { ...extra, Authorization: `Bearer ${key}` } : extra;
}

async function errorFrom(response) {
  let code = `http_${response.status}`;
  let message = response.statusText || "request failed";
  try {
    const body = await response.json();
    if (body && body.error) {
      code = body.error.code || code;
      message = body.error.message || message;
    }
  } catch {
    // Not JSON (a proxy's page, say): keep the status line.
  }
  return new ApiError(response.status, code, message);
}

async function send(method, path, init) {
  let response;
  try {
    response = await fetch(path, { method, ...init });
  } catch {
    throw new ApiError(0, "network_error", "the service cannot be reached");
  }
  if (!response.ok) {
    throw await errorFrom(response);
  }
  return response;
}

/** A JSON call; resolves to the parsed body (null for 204). */
export async function call(method, path, body) {
  const init = { headers: headers() };
  if (body !== undefined) {
    init.headers = headers({ "Content-Type": "application/json" });
    init.body = JSON.stringify(body);
  }
  const response = await send(method, path, init);
  return response.status === 204 ? null : response.json();
}

/** Upload files as multipart `files` parts. */
export async function uploadFiles(collection, files) {
  const form = new FormData();
  for (const file of files) {
    form.append("files", file, file.name);
  }
  const path = `/admin/v1/collections/${encodeURIComponent(collection)}/documents`;
  const response = await send("POST", path, { headers: headers(), body: form });
  return response.json();
}

/**
 * POST a streaming query and call onEvent(name, data) for each server-sent event, in order.
 * (EventSource can neither POST nor send an Authorization header, so the stream is read by hand.)
 */
export async function streamQuery(body, onEvent) {
  const response = await send("POST", "/v1/query", {
    headers: headers({ "Content-Type": "application/json", Accept: "text/event-stream" }),
    body: JSON.stringify({ ...body, stream: true }),
  });
  const type = response.headers.get("content-type") || "";
  if (!type.startsWith("text/event-stream")) {
    // A cached answer may come back as one JSON body: replay it as the final event.
    onEvent("done", await response.json());
    return;
  }
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += value.replaceAll("\r\n", "\n");
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const event = parseEvent(block);
      if (event) onEvent(event.name, event.data);
    }
  }
}

function parseEvent(block) {
  let name = "message";
  const data = [];
  for (const line of block.split("\n")) {
    if (line.startsWith("event:")) name = line.slice(6).trim();
    else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
  }
  if (!data.length) return null;
  try {
    return { name, data: JSON.parse(data.join("\n")) };
  } catch {
    return { name: "error", data: { error: { code: "bad_event", message: "unreadable event" } } };
  }
}
