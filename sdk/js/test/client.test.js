// The client without a gateway: what it sends, and how failures become ModelfleetError.

import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import { test } from 'node:test';

import { LLMInferenceClient, ModelfleetError } from '../src/index.js';

/** A fetch that records each request and answers with `answer(request)`. */
function fakeFetch(answer) {
  const requests = [];
  const fetch = async (url, init) => {
    const request = { url, ...init, body: init.body === undefined ? undefined : JSON.parse(init.body) };
    requests.push(request);
    return answer(request);
  };
  return { fetch, requests };
}

const json = (body, init = {}) => new Response(JSON.stringify(body),
  { status: 200, ...init, headers: { 'content-type': 'application/json', ...init.headers } });

test('client sends the bearer token and snake_case bodies to the model in the path', async () => {
  const { fetch, requests } = fakeFetch(() => json({ choices: [{ text: 'hi' }] }));
  const client = new LLMInferenceClient({ baseURL: 'http://gw:8000/api/', apiToken: 'tok', fetch });
  await client.generate({ modelId: 'my model', prompt: 'p', maxTokens: 5, topP: 0.9, topK: 40, stop: ['\n'] });
  const [request] = requests;
  assert.equal(request.url, 'http://gw:8000/api/models/my%20model/generate');
  assert.equal(request.method, 'POST');
  assert.equal(request.headers.authorization, 'Bearer tok');
  assert.deepEqual(request.body, { prompt: 'p', max_tokens: 5, top_p: 0.9, top_k: 40, stop: ['\n'] });
});

test('client sends queries without unset values and lifecycle options as body and query', async () => {
  const { fetch, requests } = fakeFetch(() => json({}));
  const client = new LLMInferenceClient({ baseURL: 'http://gw:8000', fetch });
  await client.listModels({ page: 2, size: 5, tag: undefined });
  await client.startModel('m', { force: true, wait: true });
  await client.stopModel('m');
  assert.equal(requests[0].url, 'http://gw:8000/api/models?page=2&size=5');
  assert.equal(requests[0].headers.authorization, undefined);
  assert.equal(requests[1].url, 'http://gw:8000/api/models/m/start?wait=true');
  assert.deepEqual(requests[1].body, { force: true });
  assert.equal(requests[2].url, 'http://gw:8000/api/models/m/stop');
  assert.equal(requests[2].body, undefined);
});

test('client turns an error body into ModelfleetError with code, param and retryAfter', async () => {
  const body = { error: { code: 'QUEUE_FULL', message: 'busy', type: 'service_unavailable',
    param: 'model', details: { queued: 3 } }, success: false };
  const { fetch } = fakeFetch(() => json(body, { status: 503, headers: { 'retry-after': '2' } }));
  const client = new LLMInferenceClient({ fetch });
  const error = await client.getModel('x').catch((e) => e);
  assert.ok(error instanceof ModelfleetError && error instanceof Error);
  assert.equal(error.name, 'ModelfleetError');
  assert.deepEqual([error.status, error.code, error.message, error.param, error.retryAfter],
    [503, 'QUEUE_FULL', 'busy', 'model', 2]);
  assert.deepEqual(error.details, { queued: 3 });
});

test('client reports a body that is not JSON by its status', async () => {
  const { fetch } = fakeFetch(() => new Response('Bad Gateway', { status: 502 }));
  const error = await new LLMInferenceClient({ fetch }).health().catch((e) => e);
  assert.deepEqual([error.status, error.code, error.message], [502, 'HTTP_502', 'Bad Gateway']);
});

test('client stream ends at [DONE] and rejects on an error event', async () => {
  const sse = (text) => new Response(text, { headers: { 'content-type': 'text/event-stream' } });
  let text = 'data: {"choices":[{"text":"a"}]}\n\ndata: [DONE]\n\ndata: {"never":1}\n\n';
  const { fetch, requests } = fakeFetch(() => sse(text));
  const client = new LLMInferenceClient({ fetch });
  const chunks = [];
  for await (const chunk of await client.chat({ modelId: 'm', messages: [], stream: true })) chunks.push(chunk);
  assert.deepEqual(chunks, [{ choices: [{ text: 'a' }] }]);
  assert.equal(requests[0].headers.accept, 'text/event-stream');
  assert.equal(requests[0].body.stream, true);

  text = 'data: {"error":{"code":"UPSTREAM_ERROR","message":"engine died"}}\n\ndata: [DONE]\n\n';
  const stream = await client.generate({ modelId: 'm', prompt: 'p', stream: true });
  await assert.rejects(async () => { for await (const _ of stream); },
    { name: 'ModelfleetError', code: 'UPSTREAM_ERROR', message: 'engine died' });
});

test('client times out with REQUEST_TIMEOUT and passes the caller\'s abort through', async () => {
  const hang = (_url, init) => new Promise((_resolve, reject) => {
    init.signal.addEventListener('abort', () => reject(init.signal.reason));
  });
  const client = new LLMInferenceClient({ fetch: hang, timeoutMs: 50 });
  await assert.rejects(client.listModels(), { name: 'ModelfleetError', code: 'REQUEST_TIMEOUT' });
  const controller = new AbortController();
  const pending = client.listModels({ signal: controller.signal, timeoutMs: 0 });
  controller.abort();
  await assert.rejects(pending, { name: 'AbortError' });
});

test('client reports a gateway that does not listen as GATEWAY_UNREACHABLE', async () => {
  const server = createServer();
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address();
  await new Promise((resolve) => server.close(resolve)); // the port is free again
  const client = new LLMInferenceClient({ baseURL: `http://127.0.0.1:${port}` });
  const error = await client.listModels().catch((e) => e);
  assert.ok(error instanceof ModelfleetError);
  assert.equal(error.code, 'GATEWAY_UNREACHABLE');
  assert.equal(error.status, undefined);
  assert.match(error.message, new RegExp(`127\\.0\\.0\\.1:${port}`));
});
