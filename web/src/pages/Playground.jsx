// Chat with any chat model: POST /v1/chat/completions with stream: true, each token
// shown as it arrives. The answer region is aria-live, so screen readers follow along.
import { useEffect, useRef, useState } from 'preact/hooks';
import { get, request } from '../api.js';
import { sseData } from '../sse.js';
import { Notice } from '../components/Notice.jsx';

async function chatModels() {
  const list = await get('/v1/models');
  return (list.models || [])
    .filter((m) => (m.supports || []).includes('chat'))
    .map((m) => ({ id: m.id, status: m.status }));
}

export function Playground({ query }) {
  const [models, setModels] = useState(null);
  const [model, setModel] = useState(query.get('model') || '');
  const [system, setSystem] = useState('');
  const [input, setInput] = useState('');
  const [temperature, setTemperature] = useState('0.7');
  const [maxTokens, setMaxTokens] = useState('256');
  const [messages, setMessages] = useState([]);
  const [answer, setAnswer] = useState('');
  const [streaming, setStreaming] = useState(false);
  const [stats, setStats] = useState(null);
  const [error, setError] = useState(null);
  const abort = useRef(null);

  useEffect(() => {
    chatModels().then((list) => {
      setModels(list);
      setModel((m) => m || (list[0] && list[0].id) || '');
    }, setError);
    return () => abort.current && abort.current.abort();
  }, []);

  const send = async (event) => {
    event.preventDefault();
    if (!input.trim() || !model || streaming) return;
    const history = [...messages, { role: 'user', content: input }];
    const body = {
      model,
      stream: true,
      stream_options: { include_usage: true },
      messages: system.trim() ? [{ role: 'system', content: system }, ...history] : history,
      temperature: Number(temperature),
      max_tokens: Number(maxTokens),
    };
    setMessages(history);
    setInput('');
    setAnswer('');
    setStats(null);
    setError(null);
    setStreaming(true);
    const controller = new AbortController();
    abort.current = controller;
    const started = performance.now();
    let first = null;
    let chunks = 0;
    let text = '';
    let usage = null;
    try {
      const res = await request('/v1/chat/completions', { method: 'POST', body, raw: true, signal: controller.signal });
      for await (const data of sseData(res)) {
        if (data === '[DONE]') break;
        const chunk = JSON.parse(data);
        if (chunk.error) throw new Error(chunk.error.message || 'the stream failed');
        if (chunk.usage) usage = chunk.usage;
        const delta = chunk.choices && chunk.choices[0] && chunk.choices[0].delta;
        if (delta && delta.content) {
          if (first === null) first = performance.now();
          chunks += 1;
          text += delta.content;
          setAnswer(text);
        }
      }
    } catch (err) {
      if (err.name !== 'AbortError') setError(err);
    } finally {
      const ended = performance.now();
      setStreaming(false);
      abort.current = null;
      if (text) setMessages([...history, { role: 'assistant', content: text }]);
      setAnswer('');
      const tokens = usage ? usage.completion_tokens : chunks;
      setStats({
        ttft: first === null ? null : first - started,
        tokens,
        rate: first !== null && ended > first && tokens > 1 ? (tokens - 1) / ((ended - first) / 1000) : null,
      });
    }
  };

  return (
    <>
      <h1 tabIndex={-1}>Playground</h1>
      <Notice error={error} />
      <div class="playground">
        <form class="card form settings" onSubmit={send} id="chat-form">
          <label for="p-model">Model</label>
          <select id="p-model" value={model} onChange={(e) => setModel(e.currentTarget.value)} required>
            {!models && <option value="">Loading…</option>}
            {models && models.length === 0 && <option value="">No chat model</option>}
            {(models || []).map((m) => <option key={m.id} value={m.id}>{m.id} ({m.status})</option>)}
          </select>
          <label for="p-system">System prompt</label>
          <textarea id="p-system" rows={2} value={system} onInput={(e) => setSystem(e.currentTarget.value)} />
          <div class="grid2">
            <div>
              <label for="p-temp">Temperature</label>
              <input id="p-temp" type="number" min="0" max="2" step="0.1" value={temperature}
                onInput={(e) => setTemperature(e.currentTarget.value)} />
            </div>
            <div>
              <label for="p-max">Max tokens</label>
              <input id="p-max" type="number" min="1" step="1" value={maxTokens}
                onInput={(e) => setMaxTokens(e.currentTarget.value)} />
            </div>
          </div>
          <label for="p-input">Message</label>
          <textarea id="p-input" rows={3} value={input} onInput={(e) => setInput(e.currentTarget.value)}
            onKeyDown={(e) => { if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) send(e); }}
            aria-describedby="h-send" />
          <p id="h-send" class="hint">Ctrl+Enter sends.</p>
          <div class="actions">
            <button type="submit" class="primary" disabled={streaming || !model}>Send</button>
            {streaming && <button type="button" onClick={() => abort.current && abort.current.abort()}>Stop</button>}
            <button type="button" disabled={streaming} onClick={() => { setMessages([]); setStats(null); }}>New chat</button>
          </div>
        </form>
        <section class="card conversation" aria-labelledby="conv-h">
          <h2 id="conv-h">Conversation</h2>
          {messages.length === 0 && !streaming && <p class="muted">Send a message to start.</p>}
          <ol class="messages">
            {messages.map((m, i) => (
              <li key={i} class={`msg ${m.role}`}><span class="role">{m.role}</span><div class="text">{m.content}</div></li>
            ))}
          </ol>
          {/* Always in the page, so that screen readers are already watching it. */}
          <div id="answer" aria-live="polite">
            {streaming && (
              <div class="msg assistant streaming">
                <span class="role">assistant</span>
                <div class="text">{answer}<span class="caret" aria-hidden="true">▍</span></div>
              </div>
            )}
          </div>
          {stats && (
            <p class="muted small" id="chat-stats" role="status">
              {stats.tokens} tokens
              {stats.ttft != null && `, first after ${Math.round(stats.ttft)} ms`}
              {stats.rate != null && `, ${stats.rate.toFixed(1)} tokens/s`}
            </p>
          )}
        </section>
      </div>
    </>
  );
}
