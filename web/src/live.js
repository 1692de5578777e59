// The live feed (/ws/monitor) shared by every page: one WebSocket while signed in,
// reconnected after a drop, keeping the last few minutes of each model's request
// figures for the charts and each model's latest status for the tables.
import { session, token, checkSession } from './api.js';
import { createStore } from './store.js';

export const MAX_POINTS = 300; // request_metrics arrive once a second: five minutes
export const FIGURES = ['ttft_p50', 'ttft_p95', 'latency_p50', 'latency_p95',
  'requests_per_second', 'running', 'waiting'];

/** ``t``: seconds since the epoch; ``models[name][figure]``: values aligned with ``t``. */
export const history = { t: [], models: {} };
/** ``connected``, ``tick`` (bumped per sample), ``statuses`` (name → status), ``alerts``. */
export const feed = createStore({ connected: false, tick: 0, statuses: {}, alerts: [] });

let socket = null;
let retry = null;

function series(name) {
  let s = history.models[name];
  if (!s) {
    s = {};
    for (const f of FIGURES) s[f] = new Array(history.t.length).fill(null);
    history.models[name] = s;
  }
  return s;
}

function addSample(data) {
  history.t.push(data.at || Date.now() / 1000);
  const models = data.models || {};
  for (const name of Object.keys(models)) series(name);
  for (const [name, s] of Object.entries(history.models)) {
    const m = models[name];
    for (const f of FIGURES) s[f].push(m && m[f] != null ? m[f] : null);
  }
  if (history.t.length > MAX_POINTS) {
    const drop = history.t.length - MAX_POINTS;
    history.t.splice(0, drop);
    for (const s of Object.values(history.models)) for (const f of FIGURES) s[f].splice(0, drop);
  }
}

function onMessage(event) {
  let msg;
  try {
    msg = JSON.parse(event.data);
  } catch {
    return;
  }
  const data = msg.data || {};
  if (msg.type === 'request_metrics') {
    addSample(data);
    feed.set((f) => ({ ...f, tick: f.tick + 1 }));
  } else if (msg.type === 'model_status_update') {
    feed.set((f) => ({ ...f, statuses: { ...f.statuses, [data.model_name]: data.status } }));
  } else if (msg.type === 'system_alert') {
    feed.set((f) => ({ ...f, alerts: [data, ...f.alerts].slice(0, 50) }));
  }
}

function connect() {
  clearTimeout(retry);
  if (socket || session.get().state !== 'in') return;
  const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
  const t = token();
  const ws = new WebSocket(`${scheme}//${location.host}/ws/monitor${t ? `?token=${encodeURIComponent(t)}` : ''}`);
  socket = ws;
  ws.onopen = () => {
    ws.send(JSON.stringify({ action: 'subscribe',
      events: ['model_status', 'request_metrics', 'system_alerts'] }));
    feed.set((f) => ({ ...f, connected: true }));
  };
  ws.onmessage = onMessage;
  ws.onclose = (event) => {
    socket = null;
    feed.set((f) => ({ ...f, connected: false }));
    // 1008: the guard refused the token (expired?); ask the API, whose 401 signs out.
    if (event.code === 1008) checkSession();
    if (session.get().state === 'in') retry = setTimeout(connect, 2000);
  };
}

function disconnect() {
  clearTimeout(retry);
  if (socket) {
    const ws = socket;
    socket = null;
    ws.onclose = null;
    ws.close();
  }
  feed.set((f) => ({ ...f, connected: false }));
}

session.subscribe((s) => (s.state === 'in' ? connect() : disconnect()));
