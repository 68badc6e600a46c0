// The one way the console talks to the server: the public /v1 API with a bearer token.
// Tokens follow OWASP's advice for a single-page app (README.md): the access token lives
// only in this module's memory; the refresh token is kept in sessionStorage so a reload
// of this tab can get a new access token, and it rotates on every refresh.
const RT_KEY = 'panthera.refresh';
let access = null;
let me = null;
let refreshTimer = 0;
let refreshing = null;
const listeners = new Set();

export class ApiError extends Error {
  constructor(status, body) {
    const e = (body && body.error) || {};
    super(e.message || `the server answered ${status}`);
    this.status = status;
    this.code = e.code || 'http_' + status;
    this.fields = e.fields || null;
  }
}

export function onSession(fn) { listeners.add(fn); }
export function currentUser() { return me; }
export function hasSession() { return !!access; }
function announce() { for (const fn of listeners) fn(me); }

function keep(tokens) {
  access = tokens.accessToken;
  sessionStorage.setItem(RT_KEY, tokens.refreshToken);
  clearTimeout(refreshTimer);
  // Refresh at 80% of the lifetime, so a request never starts with an expired token.
  const ms = Math.max(5, (tokens.expiresIn || 60) * 0.8) * 1000;
  refreshTimer = setTimeout(() => { refresh().catch(() => {}); }, ms);
}

function drop() {
  access = null;
  me = null;
  clearTimeout(refreshTimer);
  sessionStorage.removeItem(RT_KEY);
  announce();
}

async function raw(method, path, { body, headers = {}, token = access } = {}) {
  const h = { Accept: 'application/json', ...headers };
  if (token) h.Authorization = 'Bearer ' + token;
  let payload;
  if (body !== undefined) { h['Content-Type'] = 'application/json'; payload = JSON.stringify(body); }
  let res;
  try {
    // no-store: the browser's HTTP cache would revalidate with the ETag, and some ETags
    // (a post's version) do not change when parts of the body do (likeCount, likedByMe).
    res = await fetch(path, { method, headers: h, body: payload, cache: 'no-store' });
  } catch (e) {
    throw new ApiError(0, { error: { code: 'network', message: 'the server could not be reached; check the connection and retry' } });
  }
  return res;
}

async function parse(res) {
  if (res.status === 204 || res.status === 304) return null;
  const type = res.headers.get('Content-Type') || '';
  if (type.includes('json')) return res.json();
  return res.text();
}

// One refresh at a time: concurrent 401s wait for the same rotation (a second use of the
// old refresh token would be a replay and revoke the whole session).
export function refresh() {
  if (refreshing) return refreshing;
  const rt = sessionStorage.getItem(RT_KEY);
  if (!rt) return Promise.reject(new ApiError(401, null));
  refreshing = (async () => {
    const res = await raw('POST', '/v1/auth/refresh', { body: { refreshToken: rt }, token: null });
    const data = await parse(res);
    if (!res.ok) { drop(); throw new ApiError(res.status, data); }
    keep(data);
    return data;
  })().finally(() => { refreshing = null; });
  return refreshing;
}

// Calls the API; on 401 refreshes once and retries; a second 401 ends the session.
export async function api(method, path, opts = {}) {
  let res = await raw(method, path, opts);
  if (res.status === 401 && sessionStorage.getItem(RT_KEY) && !opts.noRetry) {
    try { await refresh(); } catch (e) { drop(); throw new ApiError(401, { error: { code: 'unauthorized', message: 'your session ended; please log in again' } }); }
    res = await raw(method, path, opts);
  }
  const data = await parse(res);
  if (res.status === 401) { drop(); }
  if (!res.ok && res.status !== 304) throw new ApiError(res.status, data);
  return { status: res.status, data, headers: res.headers };
}

export async function get(path) { return (await api('GET', path)).data; }

async function start(path, body) {
  const res = await raw('POST', path, { body, token: null });
  const data = await parse(res);
  if (!res.ok) throw new ApiError(res.status, data);
  keep(data);
  me = await get('/v1/users/me');
  announce();
  return me;
}

export const login = (name, password) =>
  start('/v1/auth/login', name.includes('@') ? { email: name, password } : { username: name, password });
export const register = (fields) => start('/v1/auth/register', fields);

export async function logout() {
  const rt = sessionStorage.getItem(RT_KEY);
  try { if (rt && access) await raw('POST', '/v1/auth/logout', { body: { refreshToken: rt } }); }
  finally { drop(); }
}

// After a reload: the refresh token in sessionStorage buys a new access token.
export async function resume() {
  if (!sessionStorage.getItem(RT_KEY)) return null;
  try {
    await refresh();
    me = await get('/v1/users/me');
    announce();
    return me;
  } catch (e) { drop(); return null; }
}

export function token() { return access; }

// Raw-body upload (API.md "Files") with progress: fetch has no upload progress, XHR has.
export function upload(path, file, onProgress) {
  return new Promise((resolve, reject) => {
    const send = (retried) => {
      const xhr = new XMLHttpRequest();
      xhr.open('POST', path + (path.includes('?') ? '&' : '?') + 'filename=' + encodeURIComponent(file.name));
      xhr.setRequestHeader('Authorization', 'Bearer ' + access);
      xhr.setRequestHeader('Content-Type', file.type || 'application/octet-stream');
      xhr.setRequestHeader('Idempotency-Key', crypto.randomUUID());
      xhr.upload.onprogress = (e) => { if (e.lengthComputable) onProgress(e.loaded / e.total); };
      xhr.onerror = () => reject(new ApiError(0, { error: { message: 'the upload failed: network error' } }));
      xhr.onload = async () => {
        let body = null;
        try { body = JSON.parse(xhr.responseText); } catch (e) { /* not JSON */ }
        if (xhr.status === 401 && !retried) {
          try { await refresh(); return send(true); } catch (e) { drop(); }
        }
        if (xhr.status >= 200 && xhr.status < 300) resolve(body); else reject(new ApiError(xhr.status, body));
      };
      xhr.send(file);
    };
    send(false);
  });
}

// A download through the API (bearer header), handed to the browser as a file.
export async function download(path, accept, filename) {
  const res = await raw('GET', path, { headers: { Accept: accept } });
  if (res.status === 401 && sessionStorage.getItem(RT_KEY)) { await refresh(); return download(path, accept, filename); }
  if (!res.ok) throw new ApiError(res.status, await parse(res));
  const blob = await res.blob();
  const url = URL.createObjectURL(blob);
  const a = document.createElement('a');
  a.href = url; a.download = filename;
  document.body.append(a); a.click(); a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
  return blob;
}

export async function blobUrl(path, accept) {
  const res = await raw('GET', path, { headers: { Accept: accept } });
  if (res.status === 401 && sessionStorage.getItem(RT_KEY)) { await refresh(); return blobUrl(path, accept); }
  if (!res.ok) throw new ApiError(res.status, await parse(res));
  return URL.createObjectURL(await res.blob());
}
