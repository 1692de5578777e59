import { useState } from 'preact/hooks';
import { signIn } from '../api.js';
import { Notice } from '../components/Notice.jsx';

export function SignIn({ reason }) {
  const [useKey, setUseKey] = useState(false);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState(null);

  const submit = async (event) => {
    event.preventDefault();
    const form = new FormData(event.currentTarget);
    setBusy(true);
    setError(null);
    try {
      await signIn(useKey
        ? { apiKey: form.get('apiKey') }
        : { username: form.get('username'), password: form.get('password') });
    } catch (err) {
      setError(err);
      setBusy(false);
    }
  };

  return (
    <section class="signin card">
      <h1 tabIndex={-1}>Sign in to modelfleet</h1>
      {reason && !error && <p class="notice" role="status">{reason}</p>}
      <form onSubmit={submit} aria-describedby={error ? 'signin-error' : undefined}>
        {useKey ? (
          <label>
            API key
            <input name="apiKey" type="password" autoComplete="off" required />
          </label>
        ) : (
          <>
            <label>
              User name
              <input name="username" autoComplete="username" required />
            </label>
            <label>
              Password
              <input name="password" type="password" autoComplete="current-password" required />
            </label>
          </>
        )}
        <div id="signin-error"><Notice error={error} /></div>
        <div class="actions">
          <button type="submit" class="primary" disabled={busy}>{busy ? 'Signing in…' : 'Sign in'}</button>
          <button type="button" class="link" onClick={() => { setUseKey(!useKey); setError(null); }}>
            {useKey ? 'Use a user name and password' : 'Use an API key instead'}
          </button>
        </div>
      </form>
    </section>
  );
}
