// Create a model (POST /api/models) or edit one (PUT /api/models/{id}).
import { useEffect, useState } from 'preact/hooks';
import { del, enc, get, post, put } from '../api.js';
import { navigate } from '../router.js';
import { Link } from '../components/Link.jsx';
import { Notice } from '../components/Notice.jsx';

const ENGINES = ['builtin', 'vllm', 'sglang', 'llamacpp', 'tgi', 'external', 'simulator'];

const list = (text) => text.split(',').map((s) => s.trim()).filter(Boolean);

function initial(model) {
  const config = (model && model.config) || {};
  return {
    source: model ? model.source : 'api',
    name: model ? model.name : '',
    display_name: model ? model.display_name || '' : '',
    description: model ? model.description || '' : '',
    engine: model ? model.engine : 'builtin',
    model: model ? model.model : '',
    aliases: model ? (model.aliases || []).join(', ') : '',
    tags: model ? (model.tags || []).join(', ') : '',
    auto_start: model ? !!model.auto_start : false,
    idle_timeout: config.idle_timeout ?? 300,
    args: JSON.stringify(config.args || {}, null, 2),
  };
}

function bodyOf(v, creating) {
  let args;
  try {
    args = JSON.parse(v.args || '{}');
  } catch {
    throw new Error('Engine arguments must be a JSON object.');
  }
  if (args === null || typeof args !== 'object' || Array.isArray(args)) {
    throw new Error('Engine arguments must be a JSON object.');
  }
  const body = {
    display_name: v.display_name || undefined,
    description: v.description || undefined,
    engine: v.engine,
    model: v.model,
    aliases: list(v.aliases),
    tags: list(v.tags),
    auto_start: v.auto_start,
    idle_timeout: Number(v.idle_timeout),
    args,
  };
  if (creating) body.name = v.name;
  return body;
}

export function ModelForm({ params }) {
  const creating = !params.id;
  const [values, setValues] = useState(creating ? initial(null) : null);
  const [error, setError] = useState(null);
  const [saving, setSaving] = useState(false);

  useEffect(() => {
    if (creating) return;
    get(`/api/models/${enc(params.id)}`).then((m) => setValues(initial(m)), setError);
  }, [params.id]);

  const field = (name) => ({
    name,
    id: `f-${name}`,
    value: values[name],
    onInput: (e) => setValues({ ...values, [name]: e.currentTarget.value }),
  });

  const submit = async (event) => {
    event.preventDefault();
    setError(null);
    setSaving(true);
    try {
      const body = bodyOf(values, creating);
      if (creating) await post('/api/models', body);
      else await put(`/api/models/${enc(params.id)}`, body);
      navigate('/models');
    } catch (err) {
      setError(err);
      setSaving(false);
    }
  };

  const remove = async () => {
    if (!confirm(`Delete model ${params.id}? Its engines are stopped.`)) return;
    try {
      await del(`/api/models/${enc(params.id)}`);
      navigate('/models');
    } catch (err) {
      setError(err);
    }
  };

  return (
    <>
      <p class="crumbs"><Link to="/models">Models</Link> /</p>
      <h1 tabIndex={-1}>{creating ? 'New model' : `Edit ${params.id}`}</h1>
      {!values ? (error ? <Notice error={error} /> : <p role="status">Loading…</p>) : (
        <form class="card form" onSubmit={submit}>
          {values.source === 'config' && (
            <p class="notice">This model comes from the config file, which is applied again
              whenever the gateway starts: change the file to keep a change.</p>
          )}
          <div class="grid2">
            <div>
              <label for="f-name">Name</label>
              <input {...field('name')} required readOnly={!creating} pattern="[^/\s]+"
                aria-describedby="h-name" />
              <p id="h-name" class="hint">The id clients send as <code>model</code>; cannot change later.</p>
            </div>
            <div>
              <label for="f-display_name">Display name</label>
              <input {...field('display_name')} />
            </div>
            <div>
              <label for="f-engine">Engine</label>
              <select {...field('engine')}>
                {ENGINES.map((e) => <option key={e} value={e}>{e}</option>)}
              </select>
            </div>
            <div>
              <label for="f-model">Weights</label>
              <input {...field('model')} required aria-describedby="h-model" />
              <p id="h-model" class="hint">A path, a GGUF file, or a base URL for <code>external</code>.</p>
            </div>
            <div>
              <label for="f-aliases">Aliases</label>
              <input {...field('aliases')} aria-describedby="h-aliases" />
              <p id="h-aliases" class="hint">Comma-separated.</p>
            </div>
            <div>
              <label for="f-tags">Tags</label>
              <input {...field('tags')} aria-describedby="h-tags" />
              <p id="h-tags" class="hint">Comma-separated.</p>
            </div>
            <div>
              <label for="f-idle_timeout">Idle timeout (seconds)</label>
              <input {...field('idle_timeout')} type="number" min="0" step="1" aria-describedby="h-idle" />
              <p id="h-idle" class="hint">Stop the engine after this long without requests; 0 never.</p>
            </div>
            <div class="check">
              <input type="checkbox" id="f-auto_start" checked={values.auto_start}
                onChange={(e) => setValues({ ...values, auto_start: e.currentTarget.checked })} />
              <label for="f-auto_start">Start with the gateway</label>
            </div>
          </div>
          <label for="f-description">Description</label>
          <textarea {...field('description')} rows={2} />
          <label for="f-args">Engine arguments (JSON)</label>
          <textarea {...field('args')} rows={5} class="mono" spellcheck={false} aria-describedby="h-args" />
          <p id="h-args" class="hint">The engine's own flags, e.g. <code>{'{"max_model_len": 8192}'}</code>; applied at the next start.</p>
          <Notice error={error} />
          <div class="actions">
            <button type="submit" class="primary" disabled={saving}>{creating ? 'Create model' : 'Save changes'}</button>
            <Link to="/models" class="button">Cancel</Link>
            {!creating && <button type="button" class="danger" onClick={remove}>Delete model</button>}
          </div>
        </form>
      )}
    </>
  );
}
