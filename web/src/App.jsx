// The shell: the session check, the navigation and the page for the current path.
import { useEffect, useRef, useState } from 'preact/hooks';
import { checkSession, session, signOut } from './api.js';
import { feed } from './live.js';
import { match, navigate, route } from './router.js';
import { useStore } from './store.js';
import { Link } from './components/Link.jsx';
import { lazyPage } from './components/Lazy.jsx';
import { SignIn } from './pages/SignIn.jsx';
import { Models } from './pages/Models.jsx';
import { ModelForm } from './pages/ModelForm.jsx';
import { Logs } from './pages/Logs.jsx';
import { Devices } from './pages/Devices.jsx';
import { Alerts } from './pages/Alerts.jsx';
import { Keys } from './pages/Keys.jsx';
import { Playground } from './pages/Playground.jsx';

// The charts page brings uPlot: loaded when first shown, not with every page.
const Live = lazyPage(() => import('./pages/Live.jsx'));

const NAV = [
  ['/models', 'Models'],
  ['/live', 'Live'],
  ['/playground', 'Playground'],
  ['/devices', 'Devices'],
  ['/alerts', 'Alerts'],
  ['/keys', 'API keys'],
];

const ROUTES = [
  ['/', Models],
  ['/models', Models],
  ['/models/new', ModelForm],
  ['/models/:id/edit', ModelForm],
  ['/models/:id/logs', Logs],
  ['/live', Live],
  ['/playground', Playground],
  ['/devices', Devices],
  ['/alerts', Alerts],
  ['/keys', Keys],
];

function NotFound() {
  return (
    <>
      <h1 tabIndex={-1}>Not found</h1>
      <p>There is no page here. <Link to="/models">Go to the models</Link>.</p>
    </>
  );
}

function page(path) {
  for (const [pattern, Component] of ROUTES) {
    const params = match(pattern, path);
    if (params) return [Component, params];
  }
  return [NotFound, {}];
}

function Nav({ path, me }) {
  const [open, setOpen] = useState(false);
  const live = useStore(feed);
  useEffect(() => setOpen(false), [path]);
  const who = me && me.kind !== 'anonymous' ? me.name : null;
  return (
    <header class="topbar">
      <div class="brand">
        <Link to="/models">modelfleet</Link>
        <span class={`dot ${live.connected ? 'on' : ''}`} role="status"
          title={live.connected ? 'live feed connected' : 'live feed disconnected'}>
          <span class="sr-only">{live.connected ? 'live feed connected' : 'live feed disconnected'}</span>
        </span>
      </div>
      <button type="button" class="menu-toggle" aria-expanded={open} aria-controls="main-nav"
        onClick={() => setOpen(!open)}>
        Menu
      </button>
      <nav id="main-nav" class={open ? 'open' : ''} aria-label="Main">
        <ul>
          {NAV.map(([to, label]) => (
            <li key={to}>
              <Link to={to} aria-current={path === to || path.startsWith(`${to}/`) ? 'page' : undefined}>
                {label}
              </Link>
            </li>
          ))}
        </ul>
        {who && (
          <div class="who">
            <span>{who}</span>
            <button type="button" class="link" onClick={signOut}>Sign out</button>
          </div>
        )}
      </nav>
    </header>
  );
}

export function App() {
  const s = useStore(session);
  const r = useStore(route);
  const main = useRef(null);

  useEffect(() => {
    checkSession();
  }, []);

  // Signed out anywhere: show sign-in, remembering where to come back to.
  useEffect(() => {
    if (s.state === 'out' && r.path !== '/sign-in') {
      const next = r.path === '/' ? '' : `?next=${encodeURIComponent(r.path)}`;
      navigate(`/sign-in${next}`, { replace: true });
    } else if (s.state === 'in' && r.path === '/sign-in') {
      navigate(r.query.get('next') || '/models', { replace: true });
    }
  }, [s.state, r.path]);

  // Moved to another page: focus its heading, so keyboard and screen-reader users start
  // there. Not on the first load, where the first Tab should reach the skip link.
  const shown = useRef(null);
  useEffect(() => {
    if (s.state === 'checking') return;
    const first = shown.current === null;
    if (shown.current === r.path) return;
    shown.current = r.path;
    const h1 = main.current && main.current.querySelector('h1');
    if (!first && h1) h1.focus({ preventScroll: true });
  }, [r.path, s.state]);

  if (s.state === 'checking') {
    return <p class="loading" role="status">Loading…</p>;
  }
  if (s.state === 'out' || r.path === '/sign-in') {
    return (
      <main ref={main} class="signin-main">
        <SignIn reason={s.reason} />
      </main>
    );
  }
  const [Page, params] = page(r.path);
  return (
    <div class="shell">
      <a class="skip" href="#content">Skip to content</a>
      <Nav path={r.path} me={s.me} />
      <main id="content" ref={main} tabIndex={-1}>
        <Page key={r.path} params={params} query={r.query} me={s.me} />
      </main>
    </div>
  );
}
