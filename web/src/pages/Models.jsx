// The models: state, instances, requests in flight, idle time; start, stop, restart.
import { useEffect, useState } from 'preact/hooks';
import { enc, get, post } from '../api.js';
import { duration } from '../format.js';
import { usePoll } from '../hooks.js';
import { feed } from '../live.js';
import { useStore } from '../store.js';
import { Link } from '../components/Link.jsx';
import { Notice } from '../components/Notice.jsx';

async function loadModels() {
  const [page, info] = await Promise.all([
    get('/api/models?size=100'),
    get('/api/models/all-models/info'),
  ]);
  return page.items.map((item) => ({ ...item, info: info.models[item.name] || null }));
}

export function StatusBadge({ status }) {
  return <span class={`badge status-${status}`}>{status}</span>;
}

function Row({ m, admin, act, busy }) {
  const info = m.info || {};
  const status = info.status || m.status;
  const running = status === 'ready' || status === 'starting';
  return (
    <tr data-model={m.name}>
      <th scope="row" data-label="Model">
        <span class="name">{m.name}</span>
        {m.aliases && m.aliases.length > 0 && <span class="muted"> ({m.aliases.join(', ')})</span>}
        <div class="muted small">{m.engine}</div>
      </th>
      <td data-label="Status"><StatusBadge status={status} />
        {info.failure_reason && <div class="small error-text">{info.failure_reason}</div>}
      </td>
      <td data-label="Instances" class="num">{info.instances ? info.instances.length : 0}</td>
      <td data-label="Pending" class="num">{info.pending_requests ?? 0}</td>
      <td data-label="Idle" class="num">{running ? duration(info.idle_time_sec) : '–'}</td>
      <td data-label="Actions"><div class="actions">
        {admin && (
          <>
            <button type="button" onClick={() => act(m, 'start')} disabled={busy || running}
              aria-label={`Start ${m.name}`}>Start</button>
            <button type="button" onClick={() => act(m, 'stop')} disabled={busy || status === 'stopped'}
              aria-label={`Stop ${m.name}`}>Stop</button>
            <button type="button" onClick={() => act(m, 'restart')} disabled={busy}
              aria-label={`Restart ${m.name}`}>Restart</button>
          </>
        )}
        <Link to={`/models/${enc(m.name)}/logs`} class="button" aria-label={`Logs of ${m.name}`}>Logs</Link>
        {admin && <Link to={`/models/${enc(m.name)}/edit`} class="button" aria-label={`Edit ${m.name}`}>Edit</Link>}
      </div></td>
    </tr>
  );
}

export function Models({ me }) {
  const admin = !me || me.role === 'admin';
  const { data, error, reload } = usePoll(loadModels, 2000);
  const live = useStore(feed);
  const [busy, setBusy] = useState({});
  const [message, setMessage] = useState('');
  const [actionError, setActionError] = useState(null);

  // A status change on the live feed: show it now rather than at the next poll.
  useEffect(() => { reload(); }, [live.statuses]);
  useEffect(() => {
    if (!message) return undefined;
    const timer = setTimeout(() => setMessage(''), 6000);
    return () => clearTimeout(timer);
  }, [message]);

  const act = async (m, action) => {
    setBusy((b) => ({ ...b, [m.name]: true }));
    setActionError(null);
    try {
      const r = await post(`/api/models/${enc(m.name)}/${action}`, {});
      setMessage(r.message || `${action} requested`);
      await reload();
    } catch (err) {
      setActionError(err);
    } finally {
      setBusy((b) => ({ ...b, [m.name]: false }));
    }
  };

  return (
    <>
      <div class="page-head">
        <h1 tabIndex={-1}>Models</h1>
        {admin && <Link to="/models/new" class="button primary">New model</Link>}
      </div>
      <Notice error={actionError || error} message={message} />
      {!data ? <p role="status">Loading…</p> : data.length === 0 ? <p>No models yet.</p> : (
        <table class="data responsive" id="models-table">
          <caption class="sr-only">Models and their state</caption>
          <thead>
            <tr>
              <th scope="col">Model</th>
              <th scope="col">Status</th>
              <th scope="col" class="num">Instances</th>
              <th scope="col" class="num">Pending</th>
              <th scope="col" class="num">Idle</th>
              <th scope="col"><span class="sr-only">Actions</span></th>
            </tr>
          </thead>
          <tbody>
            {data.map((m) => <Row key={m.id} m={m} admin={admin} act={act} busy={!!busy[m.name]} />)}
          </tbody>
        </table>
      )}
    </>
  );
}
