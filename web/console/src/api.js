// Calls to the server's public APIs, with the key or token the user gave (Access panel).
const STORE = 'flowserve.console.access';

export function getAccess() {
  try {
    return JSON.parse(sessionStorage.getItem(STORE) || '{}');
  } catch {
    return {};
  }
}

export function setAccess(a) {
  sessionStorage.setItem(STORE, JSON.stringify(a));
}

function accessHeaders() {
  const a = getAccess();
  const h = {};
  if (a.header && a.value) h[a.header] = a.value;
  if (a.token) h.Authorization = `Bearer ${a.token}`;
  return h;
}

// { ok, status, data (parsed JSON or null), error (the server's message), refused
// (401/403: a key or token is missing or wrong), response }
export async function call(method, path, { json, body, headers } = {}) {
  const h = { ...accessHeaders(), ...(headers || {}) };
  let payload = body;
  if (json !== undefined) {
    payload = JSON.stringify(json);
    h['Content-Type'] = 'application/json';
  }
  let response;
  try {
    response = await fetch(path, { method, headers: h, body: payload, cache: 'no-store' });
  } catch (e) {
    return { ok: false, status: 0, data: null, error: `no answer from the server (${e.message})`, refused: false };
  }
  const refused = response.status === 401 || response.status === 403;
  const type = response.headers.get('Content-Type') || '';
  let data = null;
  let error = null;
  if (type.includes('application/json')) {
    const text = await response.text();
    try {
      data = text ? JSON.parse(text) : null;
    } catch {
      data = null;
    }
  }
  if (!response.ok) {
    error = (data && data.error) || `${response.status} ${response.statusText}`;
  }
  return { ok: response.ok, status: response.status, data, error, refused, response };
}

// What to tell the user about a refused call: which header or token it wants.
export function refusalHint(result) {
  const m = /expecting header '([^']+)'/.exec(result.error || '');
  if (m) return { header: m[1], text: `needs the key in header '${m[1]}': enter it under Access` };
  if (/token/i.test(result.error || '')) return { header: null, text: 'needs a bearer token: enter it under Access' };
  return { header: null, text: 'refused: enter the key or token under Access' };
}
