// History routing under /ui: the gateway answers index.html for every /ui/... path,
// so a reload or a shared link lands on the same page.
import { createStore } from './store.js';

export const BASE = '/ui';

function current() {
  let path = location.pathname;
  if (path.startsWith(BASE)) path = path.slice(BASE.length);
  return { path: path.replace(/\/+$/, '') || '/', query: new URLSearchParams(location.search) };
}

export const route = createStore(current());

addEventListener('popstate', () => route.set(current()));

export function href(to) {
  return BASE + (to === '/' ? '/' : to);
}

export function navigate(to, { replace = false } = {}) {
  const url = href(to);
  if (url === location.pathname + location.search) return;
  history[replace ? 'replaceState' : 'pushState'](null, '', url);
  route.set(current());
}

/** ``/models/:id/logs`` against ``/models/sim/logs`` → ``{id: 'sim'}``, or null. */
export function match(pattern, path) {
  const want = pattern.split('/');
  const got = path.split('/');
  if (want.length !== got.length) return null;
  const params = {};
  for (let i = 0; i < want.length; i++) {
    if (want[i].startsWith(':')) params[want[i].slice(1)] = decodeURIComponent(got[i]);
    else if (want[i] !== got[i]) return null;
  }
  return params;
}
