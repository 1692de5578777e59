// Alert rules (GET/POST/PUT/DELETE /api/config/alerts), the alerts firing now and the
// history of firing and resolving (GET /api/alerts).
import { useEffect, useState } from 'preact/hooks';
import { del, enc, get, post, put } from '../api.js';
import { when } from '../format.js';
import { usePoll } from '../hooks.js';
import { feed } from '../live.js';
import { useStore } from '../store.js';
import { Notice } from '../components/Notice.jsx';

async function load() {
  const [rules, alerts] = await Promise.all([get('/api/config/alerts'), get('/api/alerts?limit=100')]);
  return { rules, active: alerts.active, history: alerts.history };
}

const SEVERITIES = ['info', 'warning', 'error', 'critical'];

function NewRule({ onCreated }) {
  const [severity, setSeverity] = useState('warning');
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  const submit = async (event) => {
    event.preventDefault();
    const form = event.currentTarget;
    const f = new FormData(form);
    const body = { name: f.get('name'), condition: f.get('condition'), severity: f.get('severity') };
    if (f.get('webhook_url')) {
      body.webhook_url = f.get('webhook_url');
      body.notification_channels = ['log', 'webhook'];
    }
    setBusy(true);
    setError(null);
    try {
      await post('/api/config/alerts', body);
      form.reset();
      setSeverity('warning');
      onCreated();
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };
  return (
    <form class="card form" onSubmit={submit} aria-labelledby="new-rule-h">
      <h2 id="new-rule-h">New rule</h2>
      <div class="grid2">
        <div>
          <label for="r-name">Name</label>
          <input id="r-name" name="name" required maxLength={200} />
        </div>
        <div>
          <label for="r-severity">Severity</label>
          <select id="r-severity" name="severity" value={severity}
            onChange={(e) => setSeverity(e.currentTarget.value)}>
            {SEVERITIES.map((s) => <option key={s} value={s}>{s}</option>)}
          </select>
        </div>
        <div>
          <label for="r-condition">Condition</label>
          <input id="r-condition" name="condition" required class="mono"
            placeholder='ttft_p95{model="tiny-chat"} > 2 for 1m' aria-describedby="h-cond" />
          <p id="h-cond" class="hint">A metric, an optional model, a comparison and an optional duration.</p>
        </div>
        <div>
          <label for="r-webhook">Webhook URL (optional)</label>
          <input id="r-webhook" name="webhook_url" type="url" />
        </div>
      </div>
      <Notice error={error} />
      <div class="actions"><button type="submit" class="primary" disabled={busy}>Add rule</button></div>
    </form>
  );
}

export function Alerts({ me }) {
  const admin = !me || me.role === 'admin';
  const { data, error, reload } = usePoll(load, 5000);
  const live = useStore(feed);
  const [actionError, setActionError] = useState(null);
  useEffect(() => { reload(); }, [live.alerts]);

  const act = async (fn) => {
    setActionError(null);
    try {
      await fn();
      await reload();
    } catch (err) {
      setActionError(err);
    }
  };

  return (
    <>
      <h1 tabIndex={-1}>Alerts</h1>
      <Notice error={actionError || error} />
      {!data ? <p role="status">Loading…</p> : (
        <>
          <section aria-labelledby="firing-h">
            <h2 id="firing-h">Firing now</h2>
            {data.active.length === 0 ? <p>Nothing is firing.</p> : (
              <ul class="alerts" aria-live="polite">
                {data.active.map((a) => (
                  <li key={a.alert_id} class={`sev-${a.severity}`}>
                    <span class={`badge sev-${a.severity}`}>{a.severity}</span> <strong>{a.name}</strong>: {a.message}
                    <span class="muted"> since {when(a.timestamp)}</span>
                  </li>
                ))}
              </ul>
            )}
          </section>
          <section aria-labelledby="rules-h">
            <h2 id="rules-h">Rules</h2>
            <table class="data responsive">
              <thead>
                <tr>
                  <th scope="col">Name</th><th scope="col">Condition</th><th scope="col">Severity</th>
                  <th scope="col">State</th><th scope="col"><span class="sr-only">Actions</span></th>
                </tr>
              </thead>
              <tbody>
                {data.rules.map((r) => (
                  <tr key={r.id}>
                    <th scope="row" data-label="Name">{r.name}{r.builtin && <span class="muted small"> (built in)</span>}</th>
                    <td data-label="Condition"><code>{r.condition}</code></td>
                    <td data-label="Severity"><span class={`badge sev-${r.severity}`}>{r.severity}</span></td>
                    <td data-label="State"><span class={`badge state-${r.status.state}`}>{r.status.state}</span>
                      {r.status.value != null && <span class="muted small"> {(+r.status.value).toPrecision(3)}</span>}</td>
                    <td data-label="Actions"><div class="actions">
                      {admin && !r.builtin && (
                        <>
                          <button type="button" onClick={() => act(() => put(`/api/config/alerts/${enc(r.id)}`, { enabled: !r.enabled }))}>
                            {r.enabled ? 'Disable' : 'Enable'}<span class="sr-only"> {r.name}</span>
                          </button>
                          <button type="button" class="danger" onClick={() => confirm(`Delete rule ${r.name}?`) && act(() => del(`/api/config/alerts/${enc(r.id)}`))}>
                            Delete<span class="sr-only"> {r.name}</span>
                          </button>
                        </>
                      )}
                    </div></td>
                  </tr>
                ))}
              </tbody>
            </table>
          </section>
          {admin && <NewRule onCreated={reload} />}
          <section aria-labelledby="history-h">
            <h2 id="history-h">History</h2>
            {data.history.length === 0 ? <p>No alert has fired yet.</p> : (
              <table class="data responsive">
                <thead>
                  <tr><th scope="col">When</th><th scope="col">Rule</th><th scope="col">State</th><th scope="col">Message</th></tr>
                </thead>
                <tbody>
                  {data.history.map((e) => (
                    <tr key={e.id}>
                      <td data-label="When">{when(e.timestamp)}</td>
                      <td data-label="Rule">{e.name || e.rule_id}</td>
                      <td data-label="State"><span class={`badge state-${e.state}`}>{e.state}</span></td>
                      <td data-label="Message">{e.message}</td>
                    </tr>
                  ))}
                </tbody>
              </table>
            )}
          </section>
        </>
      )}
    </>
  );
}
