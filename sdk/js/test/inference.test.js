// Inference through the model in the path (seed 002): generate, chat and embeddings,
// plain and streamed. Needs MODELFLEET_URL naming a gateway with the simulator model
// "sim-a" (tests/e2e/test_js_sdk.py starts one). The simulator answers with the words
// "alpha bravo charlie …", one per token, whatever the prompt.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { LLMInferenceClient, ModelfleetError } from '../src/index.js';

const baseURL = process.env.MODELFLEET_URL;
if (!baseURL) {
  throw new Error('MODELFLEET_URL is not set: these tests need a running modelfleet gateway '
    + '(pytest tests/e2e/test_js_sdk.py starts one and sets it)');
}
const client = new LLMInferenceClient({ baseURL, timeoutMs: 60_000 });

test('generate answers with seed 002 completion and honours camelCase options', async () => {
  const response = await client.generate({
    modelId: 'sim-a', prompt: 'Hello, how are you?', maxTokens: 5, temperature: 0.7,
    topP: 0.9, topK: 40, stop: ['\n', 'Human:'],
  });
  assert.ok(response.id && Number.isInteger(response.created));
  assert.deepEqual(response.choices,
    [{ index: 0, text: 'alpha bravo charlie delta echo', finish_reason: 'length' }]);
  assert.equal(response.usage.completion_tokens, 5); // maxTokens reached the engine
});

test('generate with stream yields chunks up to [DONE]', async () => {
  const stream = await client.generate({ modelId: 'sim-a', prompt: 'Tell me a story',
    maxTokens: 4, stream: true });
  const chunks = [];
  for await (const chunk of stream) chunks.push(chunk);
  assert.ok(chunks.length >= 4, `${chunks.length} chunks`);
  assert.equal(new Set(chunks.map((c) => c.id)).size, 1);
  assert.equal(chunks.map((c) => c.choices[0]?.text ?? '').join(''), 'alpha bravo charlie delta ');
});

test('chat answers plain and streamed', async () => {
  const messages = [{ role: 'system', content: 'You are a helpful assistant.' },
    { role: 'user', content: 'Hello!' }];
  const reply = await client.chat({ modelId: 'sim-a', messages, maxTokens: 3, temperature: 0.7 });
  assert.deepEqual(reply.choices[0].message, { role: 'assistant', content: 'alpha bravo charlie' });
  assert.equal(reply.usage.completion_tokens, 3);

  const stream = await client.chat({ modelId: 'a', messages, maxTokens: 3, stream: true });
  let text = '';
  for await (const chunk of stream) text += chunk.choices[0]?.delta?.content ?? '';
  assert.equal(text, 'alpha bravo charlie ');
});

test('embeddings answer one vector per input', async () => {
  const response = await client.embeddings({ modelId: 'sim-a',
    input: ['Hello world', 'How are you?'], encodingFormat: 'float' });
  assert.deepEqual(response.data.map((d) => d.index), [0, 1]);
  assert.ok(response.data.every((d) => d.embedding.length > 0
    && d.embedding.every((x) => typeof x === 'number')));
});

test('inference errors arrive as ModelfleetError', async () => {
  const missing = await client.generate({ modelId: 'sdk-no-such-model', prompt: 'x' })
    .catch((e) => e);
  assert.ok(missing instanceof ModelfleetError);
  assert.deepEqual([missing.status, missing.code], [404, 'MODEL_NOT_FOUND']);
  const invalid = await client.generate({ modelId: 'sim-a', maxTokens: 3 }).catch((e) => e);
  assert.deepEqual([invalid.status, invalid.param], [400, 'prompt']);
  const stream = await client.chat({ modelId: 'sdk-no-such-model', stream: true,
    messages: [{ role: 'user', content: 'x' }] }).catch((e) => e);
  assert.equal(stream.code, 'MODEL_NOT_FOUND'); // before any chunk: the promise rejects
});

test('health lists the models', async () => {
  const health = await client.health();
  assert.equal(health.status, 'ok');
  assert.ok('sim-a' in health.models);
});
