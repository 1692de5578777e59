// The SSE parser alone: events split at every awkward place must come out whole.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { SSEParser, readSSE } from '../src/index.js';

/** Feeds `chunks` one by one; answers every event. */
function parse(chunks) {
  const parser = new SSEParser();
  return [...chunks.flatMap((c) => parser.push(c)), ...parser.end()];
}

/** Every way to cut `text` in two, and cutting it into single characters. */
function cuts(text) {
  const out = [[...text]];
  for (let i = 0; i <= text.length; i++) out.push([text.slice(0, i), text.slice(i)]);
  return out;
}

const STREAM = ': keep-alive\n\n'
  + 'data: {"type":"historical","log":{"message":"a: b"}}\n\n'
  + 'event: update\r\nid: 7\r\ndata: line one\r\ndata:line two\r\n\r\n'
  + 'data: last\r\rdata: [DONE]\n\n';

const EXPECTED = [
  { event: 'message', data: '{"type":"historical","log":{"message":"a: b"}}' },
  { event: 'update', data: 'line one\nline two', id: '7' },
  { event: 'message', data: 'last', id: '7' },
  { event: 'message', data: '[DONE]', id: '7' },
];

test('sse parser gives the same events however the stream is cut', () => {
  for (const chunks of cuts(STREAM)) assert.deepEqual(parse(chunks), EXPECTED, JSON.stringify(chunks));
});

test('sse parser does not end a line early on a \\r\\n cut in two', () => {
  const parser = new SSEParser();
  assert.deepEqual(parser.push('data: a\r'), []);
  // Were the lone \r taken as a line end, the \n would be a blank line and "a" would
  // leave alone, without "b".
  assert.deepEqual(parser.push('\ndata: b\r\n\r\n'), [{ event: 'message', data: 'a\nb' }]);
});

test('sse parser drops an event the stream never closed', () => {
  assert.deepEqual(parse(['data: whole\n\n', 'data: cut off\n']), [{ event: 'message', data: 'whole' }]);
  assert.deepEqual(parse(['data: closed by a final cr\n\r']),
    [{ event: 'message', data: 'closed by a final cr' }]);
});

test('sse parser ignores comments, unknown fields and events without data', () => {
  assert.deepEqual(parse([':x\n\nretry: 5\nfoo: bar\n\nevent: e\n\ndata\n\n']),
    [{ event: 'message', data: '' }]);
});

test('sse reader joins utf-8 characters split between byte chunks and skips a bom', async () => {
  const bytes = new TextEncoder().encode('\ufeffdata: 模型加载完成 ✓\n\n');
  const chunks = [...bytes].map((b) => Uint8Array.of(b)); // every multi-byte character cut
  async function* body() { yield* chunks; }
  const events = [];
  for await (const event of readSSE(body())) events.push(event);
  assert.deepEqual(events, [{ event: 'message', data: '模型加载完成 ✓' }]);
});

test('sse reader cancels a web stream when the loop is left early', async () => {
  let cancelled = false;
  const stream = new ReadableStream({
    pull(controller) { controller.enqueue(new TextEncoder().encode('data: x\n\n')); },
    cancel() { cancelled = true; },
  });
  for await (const event of readSSE(stream)) {
    assert.equal(event.data, 'x');
    break;
  }
  assert.equal(cancelled, true);
});
