// Every call the dashboard makes to the gateway. The bearer value (a JWT from sign-in,
// or an API key pasted instead) lives in sessionStorage, so it ends with the tab. A 401
// on any call means it is gone or never was: the session ends and sign-in is shown.
import { createStore } from './store.js';

const TOKEN_KEY = 'modelfleet.token';

/** ``{state: 'checking'|'in'|'out', me, reason}``; ``me`` is ``/api/auth/me``. */
export const session = createStore({ state: 'checking', me: null, reason: '' });

export function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

export function setToken(value) {
  if (value) sessionStorage.setItem(TOKEN_KEY, value);
  else sessionStorage.removeItem(TOKEN_KEY);
}

/** An error answer from the gateway, read from its one JSON error shape. */
export class ApiError extends Error {
  constructor(status, message, code) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

export function authHeaders() {
  const t = token();
  return t ? { Authorization: `Bearer ${t}` } : {};
}

export function signedOut(reason) {
  setToken(null);
  session.set({ state: 'out', me: null, reason: reason || '' });
}

async function errorOf(res) {
  let message = `${res.status} ${res.statusText}`;
  let code;
  try {
    const body = await res.json();
    const err = body && body.error;
    if (err && typeof err === 'object') {
      message = err.message || message;
      code = err.code;
    } else if (body && (body.message || body.detail)) {
      message = String(body.message || body.detail);
    }
  } catch {
    // not JSON: keep the status line
  }
  return new ApiError(res.status, message, code);
}

/**
 * fetch() with the bearer value and JSON in and out. Resolves to the raw Response when
 * ``raw`` is set (streams), else to the parsed body. Rejects with ApiError; a 401 also
 * ends the session unless ``signIn`` (the sign-in call itself) is set.
 */
export async function request(path, { method = 'GET', body, signal, raw = false, signIn = false } = {}) {
  const headers = { ...authHeaders() };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const res = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    signal,
  });
  if (!res.ok) {
    const err = await errorOf(res);
    if (res.status === 401 && !signIn) signedOut('Your session has ended. Please sign in again.');
    throw err;
  }
  if (raw) return res;
  if (res.status === 204) return null;
  return res.json();
}

export const get = (path, opts) => request(path, opts);
export const post = (path, body, opts) => request(path, { ...opts, method: 'POST', body });
export const put = (path, body, opts) => request(path, { ...opts, method: 'PUT', body });
export const del = (path, opts) => request(path, { ...opts, method: 'DELETE' });

/** Who the caller is; a 401 here means sign-in is needed (auth is on, no valid token). */
export async function checkSession() {
  try {
    const me = await request('/api/auth/me');
    session.set({ state: 'in', me, reason: '' });
  } catch (err) {
    if (!(err instanceof ApiError && err.status === 401)) {
      session.set({ state: 'out', me: null, reason: err.message });
    }
  }
}

/** ``POST /api/auth/token`` (seed 002's shape); an API key may be used as it is. */
export async function signIn({ username, password, apiKey }) {
  if (apiKey) {
    setToken(apiKey.trim());
  } else {
    const body = await request('/api/auth/token', {
      method: 'POST', body: { username, password }, signIn: true,
    });
    setToken(body.access_token);
  }
  try {
    const me = await request('/api/auth/me', { signIn: true });
    session.set({ state: 'in', me, reason: '' });
  } catch (err) {
    setToken(null);
    throw err;
  }
}

export function signOut() {
  signedOut('');
}

export const enc = encodeURIComponent;
