// API keys: create one (its secret is shown this once) and revoke (GET/POST/DELETE /api/keys).
import { useRef, useState } from 'preact/hooks';
import { del, enc, get, post } from '../api.js';
import { when } from '../format.js';
import { usePoll } from '../hooks.js';
import { Notice } from '../components/Notice.jsx';

const list = (text) => text.split(',').map((s) => s.trim()).filter(Boolean);
const number = (v) => (v === '' || v == null ? undefined : Number(v));

function NewKey({ onCreated }) {
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  const submit = async (event) => {
    event.preventDefault();
    const form = event.currentTarget;
    const f = new FormData(form);
    const models = list(String(f.get('allowed_models') || ''));
    const body = {
      name: f.get('name') || 'key',
      role: f.get('role'),
      allowed_models: models.length ? models : undefined,
      rpm: number(f.get('rpm')),
      tpm: number(f.get('tpm')),
      expires_in_days: number(f.get('expires_in_days')),
    };
    setBusy(true);
    setError(null);
    try {
      const created = await post('/api/keys', body);
      form.reset();
      onCreated(created);
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };
  return (
    <form class="card form" onSubmit={submit} aria-labelledby="new-key-h">
      <h2 id="new-key-h">New key</h2>
      <div class="grid2">
        <div><label for="k-name">Name</label><input id="k-name" name="name" required maxLength={200} /></div>
        <div>
          <label for="k-role">Role</label>
          <select id="k-role" name="role">
            <option value="user">user: inference and reading</option>
            <option value="admin">admin: management too</option>
          </select>
        </div>
        <div>
          <label for="k-models">Allowed models</label>
          <input id="k-models" name="allowed_models" aria-describedby="h-models" />
          <p id="h-models" class="hint">Comma-separated; empty for every model.</p>
        </div>
        <div><label for="k-days">Expires in (days)</label><input id="k-days" name="expires_in_days" type="number" min="0.01" step="any" /></div>
        <div><label for="k-rpm">Requests per minute</label><input id="k-rpm" name="rpm" type="number" min="1" step="1" /></div>
        <div><label for="k-tpm">Tokens per minute</label><input id="k-tpm" name="tpm" type="number" min="1" step="1" /></div>
      </div>
      <Notice error={error} />
      <div class="actions"><button type="submit" class="primary" disabled={busy}>Create key</button></div>
    </form>
  );
}

function Secret({ created, onDone }) {
  const input = useRef(null);
  const [copied, setCopied] = useState(false);
  const copy = async () => {
    input.current.select();
    try {
      await navigator.clipboard.writeText(created.key);
      setCopied(true);
    } catch {
      setCopied(false); // no clipboard (plain http): the text is selected for Ctrl+C
    }
  };
  return (
    <section class="card secret" role="alert" aria-labelledby="secret-h">
      <h2 id="secret-h">Key “{created.name}” created</h2>
      <p>Copy it now: it is shown this once and cannot be read again.</p>
      <div class="copy-row">
        <label for="new-secret" class="sr-only">The new key</label>
        <input id="new-secret" ref={input} readOnly value={created.key} class="mono" onFocus={(e) => e.currentTarget.select()} />
        <button type="button" onClick={copy}>{copied ? 'Copied' : 'Copy'}</button>
        <button type="button" onClick={onDone}>Done</button>
      </div>
    </section>
  );
}

export function Keys({ me }) {
  const admin = !me || me.role === 'admin';
  const { data, error, reload } = usePoll(() => (admin ? get('/api/keys?include_revoked=true') : null), 0);
  const [created, setCreated] = useState(null);
  const [actionError, setActionError] = useState(null);
  const [message, setMessage] = useState('');

  if (!admin) {
    return (<><h1 tabIndex={-1}>API keys</h1><p>Only an admin can see and make API keys.</p></>);
  }

  const revoke = async (k) => {
    if (!confirm(`Revoke key ${k.name} (${k.prefix}…)? Clients using it are refused at once.`)) return;
    setActionError(null);
    try {
      const r = await del(`/api/keys/${enc(k.id)}`);
      setMessage(r.message);
      await reload();
    } catch (err) {
      setActionError(err);
    }
  };

  return (
    <>
      <h1 tabIndex={-1}>API keys</h1>
      {created && <Secret created={created} onDone={() => setCreated(null)} />}
      <Notice error={actionError || error} message={message} />
      <NewKey onCreated={(k) => { setCreated(k); setMessage(''); reload(); }} />
      <section aria-labelledby="keys-h">
        <h2 id="keys-h">Keys</h2>
        {!data ? <p role="status">Loading…</p> : data.items.length === 0 ? <p>No keys yet.</p> : (
          <table class="data responsive" id="keys-table">
            <thead>
              <tr>
                <th scope="col">Name</th><th scope="col">Key</th><th scope="col">Role</th>
                <th scope="col">Models</th><th scope="col">Limits</th><th scope="col">Last used</th>
                <th scope="col">State</th><th scope="col"><span class="sr-only">Actions</span></th>
              </tr>
            </thead>
            <tbody>
              {data.items.map((k) => (
                <tr key={k.id} data-key={k.id}>
                  <th scope="row" data-label="Name">{k.name}</th>
                  <td data-label="Key"><code>{k.prefix}…</code></td>
                  <td data-label="Role">{k.role}</td>
                  <td data-label="Models">{k.allowed_models ? k.allowed_models.join(', ') : 'all'}</td>
                  <td data-label="Limits">{k.rpm ? `${k.rpm} rpm` : '–'}{k.tpm ? `, ${k.tpm} tpm` : ''}</td>
                  <td data-label="Last used">{when(k.last_used_at)}</td>
                  <td data-label="State">
                    {k.revoked_at ? <span class="badge state-revoked">revoked</span>
                      : <span class="badge state-ok">active</span>}
                    {k.expires_at && !k.revoked_at && <div class="muted small">expires {when(k.expires_at)}</div>}
                  </td>
                  <td data-label="Actions"><div class="actions">
                    {!k.revoked_at && (
                      <button type="button" class="danger" onClick={() => revoke(k)}>
                        Revoke<span class="sr-only"> {k.name}</span>
                      </button>
                    )}
                  </div></td>
                </tr>
              ))}
            </tbody>
          </table>
        )}
      </section>
    </>
  );
}
