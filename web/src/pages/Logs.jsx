// A model's log: the tail, then live lines (SSE /api/models/{id}/logs/stream).
import { useEffect, useRef, useState } from 'preact/hooks';
import { enc, request } from '../api.js';
import { sseData } from '../sse.js';
import { Link } from '../components/Link.jsx';
import { Notice } from '../components/Notice.jsx';

const MAX_LINES = 2000;

export function Logs({ params }) {
  const [lines, setLines] = useState([]);
  const [state, setState] = useState('connecting');
  const [error, setError] = useState(null);
  const [follow, setFollow] = useState(true);
  const box = useRef(null);

  useEffect(() => {
    const abort = new AbortController();
    let pending = [];
    let timer = null;
    // Lines arrive in bursts; render them a frame at a time, not one by one.
    const flush = () => {
      timer = null;
      const add = pending;
      pending = [];
      setLines((old) => old.concat(add).slice(-MAX_LINES));
    };
    (async () => {
      try {
        const res = await request(`/api/models/${enc(params.id)}/logs/stream?lines=200`,
          { raw: true, signal: abort.signal });
        setState('streaming');
        for await (const data of sseData(res)) {
          const event = JSON.parse(data);
          if (event.type === 'historical' || event.type === 'realtime') {
            pending.push(event.log);
            if (!timer) timer = requestAnimationFrame(flush);
          } else if (event.type === 'historical_complete') {
            setState('live');
          } else if (event.type === 'stream_end' || event.type === 'error') {
            setState(`ended: ${event.message}`);
          }
        }
        if (!abort.signal.aborted) setState((s) => (s.startsWith('ended') ? s : 'ended'));
      } catch (err) {
        if (!abort.signal.aborted) {
          setError(err);
          setState('ended');
        }
      }
    })();
    return () => {
      abort.abort();
      if (timer) cancelAnimationFrame(timer);
    };
  }, [params.id]);

  useEffect(() => {
    if (follow && box.current) box.current.scrollTop = box.current.scrollHeight;
  }, [lines, follow]);

  return (
    <>
      <p class="crumbs"><Link to="/models">Models</Link> /</p>
      <div class="page-head">
        <h1 tabIndex={-1}>Logs of {params.id}</h1>
        <span class="badge" role="status" id="log-state">{state}</span>
      </div>
      <Notice error={error} />
      <div class="toolbar">
        <label class="check">
          <input type="checkbox" checked={follow} onChange={(e) => setFollow(e.currentTarget.checked)} />
          Follow new lines
        </label>
        <button type="button" onClick={() => setLines([])}>Clear view</button>
      </div>
      <div ref={box} class="log" role="log" aria-label={`Log of ${params.id}`} tabIndex={0} id="log-lines">
        {lines.length === 0 ? <p class="muted">No lines yet.</p> : lines.map((l, i) => (
          <div key={i} class="log-line">
            <time class="muted">{new Date(l.timestamp * 1000).toLocaleTimeString()}</time> {l.message}
          </div>
        ))}
      </div>
    </>
  );
}
