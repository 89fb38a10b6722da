// The API from the page: the token (sessionStorage, this tab only) goes in every request's
// Authorization header, streams included (read with fetch: EventSource cannot send headers).

const KEY = "citywatch.token";

export class ApiError extends Error {
  constructor(status, detail) {
    super(`${status}: ${typeof detail === "string" ? detail : JSON.stringify(detail)}`);
    this.status = status;
    this.detail = detail;
  }
}

export const token = {
  get: () => sessionStorage.getItem(KEY),
  set: (value) => sessionStorage.setItem(KEY, value),
  clear: () => sessionStorage.removeItem(KEY),
};

function headers(extra = {}) {
  const t = token.get();
  return { ...(t ? { Authorization: `Bearer ${t}` } : {}), ...extra };
}

// path with its query: undefined, null and "" parameters are left out
export function withQuery(path, params = {}) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v !== undefined && v !== null && v !== "") q.set(k, v);
  }
  const s = q.toString();
  return s ? `${path}?${s}` : path;
}

export async function api(path, { method = "GET", body, params } = {}) {
  const init = { method, headers: headers(body === undefined ? {} : { "Content-Type": "application/json" }) };
  if (body !== undefined) init.body = JSON.stringify(body);
  const r = await fetch(withQuery(path, params), init);
  const text = await r.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = text; }
  if (!r.ok) throw new ApiError(r.status, data && data.detail !== undefined ? data.detail : data);
  return data;
}

// Saves what `path` answers as a file (the token is in the request, so a plain link cannot do)
export async function download(path, params, filename) {
  const r = await fetch(withQuery(path, params), { headers: headers() });
  if (!r.ok) throw new ApiError(r.status, await r.text());
  const url = URL.createObjectURL(await r.blob());
  const a = Object.assign(document.createElement("a"), { href: url, download: filename });
  a.click();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

// Server-sent events over fetch: onEvent(name, data) per event, until signal aborts.
// Reconnects after a pause when the stream ends or fails (onState(false) meanwhile).
export async function stream(path, onEvent, { signal, onState = () => {}, retryMs = 2000 } = {}) {
  while (!signal?.aborted) {
    try {
      const r = await fetch(path, { headers: headers({ Accept: "text/event-stream" }), signal });
      if (!r.ok) throw new ApiError(r.status, await r.text());
      onState(true);
      await readEvents(r.body, onEvent);
    } catch (e) {
      if (signal?.aborted) return;
      if (e instanceof ApiError && (e.status === 401 || e.status === 403 || e.status === 404)) {
        onState(false, e);
        return;
      }
    }
    onState(false);
    await new Promise((done) => setTimeout(done, retryMs));
  }
}

async function readEvents(body, onEvent) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let name = "message";
      const data = [];
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) name = line.slice(6).trim();
        else if (line.startsWith("data:")) data.push(line.slice(5).trimStart());
      }
      if (data.length) onEvent(name, JSON.parse(data.join("\n")));
    }
  }
}
