// Model management against a running gateway: seed 002's example, CRUD, lifecycle
// tasks, info, logs and errors. Needs MODELFLEET_URL; tests/e2e/test_js_sdk.py starts
// the gateway. Models made here carry tags of their own, so the other test files (run
// at the same time against the same gateway) do not change what these lists see.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { LLMInferenceClient, ModelfleetError } from '../src/index.js';

const baseURL = process.env.MODELFLEET_URL;
if (!baseURL) {
  throw new Error('MODELFLEET_URL is not set: these tests need a running modelfleet gateway '
    + '(pytest tests/e2e/test_js_sdk.py starts one and sets it)');
}
const client = new LLMInferenceClient({ baseURL, timeoutMs: 60_000 });

/** The ModelfleetError that `promise` rejects with. */
async function failure(promise) {
  const error = await promise.then(() => assert.fail('expected a ModelfleetError'), (e) => e);
  assert.ok(error instanceof ModelfleetError, String(error));
  return error;
}

test('seed 002 javascript example runs with only its import changed', async () => {
  // Seed 002's example as written, except the framework: "simulator" instead of "vllm",
  // so that the model can start on a machine without a GPU.
  const client = new LLMInferenceClient({
    baseURL,
    apiToken: 'YOUR_API_TOKEN',
  });

  // 获取模型列表
  const models = await client.listModels();

  // 创建模型
  const model = await client.createModel({
    name: 'my-model',
    framework: 'simulator',
    config: { model_name: 'meta-llama/Llama-2-7b-hf' },
  });

  // 生成文本
  const response = await client.generate({
    modelId: model.id,
    prompt: 'Hello, world!',
    maxTokens: 100,
  });

  assert.ok(Array.isArray(models.items) && Number.isInteger(models.total));
  assert.ok(model.id && model.id !== 'my-model', 'createModel answers with the stored id');
  assert.equal(model.name, 'my-model');
  assert.equal(model.framework, 'simulator');
  assert.equal(model.model, 'meta-llama/Llama-2-7b-hf');
  assert.equal(response.choices[0].index, 0);
  assert.match(response.choices[0].text, /^alpha bravo/);
  assert.equal(response.usage.completion_tokens, 100);
});

test('models crud with list filters and pagination', async () => {
  const made = [];
  for (const n of [1, 2, 3]) {
    made.push(await client.createModel({
      name: `sdk-crud-${n}`, framework: 'simulator', model: 'sim', displayName: `CRUD ${n}`,
      priority: n, config: { max_num_seqs: 2 }, tags: ['sdk-crud'],
    }));
  }
  assert.deepEqual(made.map((m) => [m.display_name, m.priority, m.status, m.tags]), [
    ['CRUD 1', 1, 'stopped', ['sdk-crud']], ['CRUD 2', 2, 'stopped', ['sdk-crud']],
    ['CRUD 3', 3, 'stopped', ['sdk-crud']]]);

  const first = await client.listModels({ tag: 'sdk-crud', size: 2 });
  assert.deepEqual([first.total, first.page, first.size, first.pages, first.items.length],
    [3, 1, 2, 2, 2]);
  const second = await client.listModels({ tag: 'sdk-crud', size: 2, page: 2 });
  assert.equal(second.items.length, 1);
  assert.deepEqual([...first.items, ...second.items].map((m) => m.name).sort(),
    ['sdk-crud-1', 'sdk-crud-2', 'sdk-crud-3']);
  assert.equal((await client.listModels({ tag: 'sdk-crud', framework: 'simulator' })).total, 3);
  assert.equal((await client.listModels({ tag: 'sdk-crud', framework: 'vllm' })).total, 0);
  assert.equal((await client.listModels({ tag: 'sdk-crud', status: 'stopped' })).total, 3);
  assert.equal((await client.listModels({ tag: 'sdk-crud', status: 'running' })).total, 0);

  const [one] = made;
  assert.equal((await client.getModel(one.id)).name, 'sdk-crud-1');
  assert.equal((await client.getModel('sdk-crud-1')).id, one.id);

  const updated = await client.updateModel(one.id, {
    displayName: '更新的模型名称', priority: 7, config: { seed: 3 },
    tags: ['sdk-crud', 'updated'],
  });
  assert.equal(updated.display_name, '更新的模型名称');
  assert.equal(updated.priority, 7);
  assert.deepEqual(updated.config, { max_num_seqs: 2, seed: 3 }); // merged, not replaced
  assert.deepEqual((await client.listModels({ tag: 'updated' })).items.map((m) => m.id), [one.id]);

  for (const m of made) assert.equal((await client.deleteModel(m.id)).success, true);
  const gone = await failure(client.getModel(one.id));
  assert.deepEqual([gone.status, gone.code], [404, 'MODEL_NOT_FOUND']);
  assert.equal((await client.listModels({ tag: 'sdk-crud' })).total, 0);
});

test('start follows a task to ready; info, logs and the log stream follow the model', async () => {
  const model = await client.createModel({
    name: 'sdk-life', framework: 'simulator', model: 'sim', tags: ['sdk-life'],
  });
  const started = await client.startModel(model.id, { timeout: 60 });
  assert.equal(started.success, true);
  assert.equal(started.model_name, 'sdk-life');
  const task = await client.waitTask(started.task_id, { timeoutMs: 60_000 });
  assert.equal(task.state, 'succeeded', task.message);
  assert.deepEqual([task.kind, task.model], ['start', 'sdk-life']);
  assert.equal((await client.getTask(started.task_id)).state, 'succeeded');

  const { model: info } = await client.modelInfo('sdk-life');
  assert.equal(info.status, 'ready');
  assert.ok(Number.isInteger(info.pid) && info.pid > 0);
  assert.equal(info.is_available, true);
  assert.equal(info.pending_requests, 0);
  const detail = await client.getModel(model.id);
  assert.deepEqual([detail.status, detail.health], ['ready', 'healthy']);
  const running = await client.listModels({ tag: 'sdk-life', status: 'running' });
  assert.deepEqual(running.items.map((m) => m.name), ['sdk-life']);

  const { logs } = await client.logs('sdk-life', { lines: 3 });
  assert.equal(logs.length, 3);
  for (const line of logs) {
    assert.deepEqual(Object.keys(line).sort(), ['level', 'message', 'timestamp']);
    assert.match(line.timestamp, /Z$/);
  }

  const seen = [];
  for await (const event of client.streamLogs('sdk-life', { lines: 2 })) {
    seen.push(event);
    if (event.type === 'historical_complete') break; // leaving closes the stream
  }
  assert.deepEqual(seen.map((e) => e.type), ['historical', 'historical', 'historical_complete']);
  assert.ok(seen.slice(0, 2).every((e) => typeof e.log.message === 'string'));

  const restarted = await client.restartModel('sdk-life', { wait: true });
  assert.equal(restarted.status, 'ready');
  const stopped = await client.stopModel(model.id, { force: true, wait: true });
  assert.equal(stopped.status, 'stopped');
  assert.equal((await client.modelInfo('sdk-life')).model.status, 'stopped');
  await client.deleteModel(model.id);
});

test('a log stream can be stopped with an abort signal', async () => {
  const controller = new AbortController();
  const events = [];
  const reading = (async () => {
    for await (const event of client.streamLogs('sim-a', { signal: controller.signal })) {
      events.push(event);
      if (event.type === 'historical_complete') controller.abort();
    }
  })();
  await assert.rejects(reading, { name: 'AbortError' });
  assert.equal(events.at(-1).type, 'historical_complete');
});

test('seed 002 routes address a model by its stored id, as they do by name', async () => {
  const model = await client.createModel({ name: 'sdk-by-id', framework: 'simulator', model: 'sim' });
  try {
    assert.equal((await client.startModel(model.id, { wait: true })).status, 'ready');
    assert.ok((await client.logs(model.id, { lines: 1 })).logs.length === 1);
    const reply = await client.chat({ modelId: model.id, maxTokens: 2,
      messages: [{ role: 'user', content: 'hi' }] });
    assert.equal(reply.choices[0].message.content, 'alpha bravo');
    const vectors = await client.embeddings({ modelId: model.id, input: 'hi' });
    assert.equal(vectors.data.length, 1);
  } finally {
    await client.deleteModel(model.id);
  }
});

test('gateway errors arrive as ModelfleetError with status, code and param', async () => {
  const missing = await failure(client.getModel('sdk-no-such-model'));
  assert.deepEqual([missing.status, missing.code], [404, 'MODEL_NOT_FOUND']);
  assert.match(missing.message, /sdk-no-such-model/);
  assert.equal((await failure(client.startModel('sdk-no-such-model'))).code, 'MODEL_NOT_FOUND');
  assert.equal((await failure(client.logs('sdk-no-such-model'))).status, 404);

  const fields = { name: 'sdk-dup', framework: 'simulator', model: 'sim' };
  const dup = await client.createModel(fields);
  const conflict = await failure(client.createModel(fields));
  assert.deepEqual([conflict.status, conflict.code], [409, 'MODEL_ALREADY_EXISTS']);
  await client.deleteModel(dup.id);

  const invalid = await failure(client.createModel({ ...fields, name: 'sdk-bad', priority: 'high' }));
  assert.deepEqual([invalid.status, invalid.param], [422, 'priority']);
  const unknown = await failure(client.createModel({ ...fields, name: 'sdk-bad', bogus: 1 }));
  assert.deepEqual([unknown.status, unknown.param], [422, 'bogus']);
  const tooBig = await failure(client.listModels({ size: 101 }));
  assert.deepEqual([tooBig.status, tooBig.param], [422, 'query.size']);
  const badTimeout = await failure(client.startModel('sim-a', { timeout: -1 }));
  assert.equal(badTimeout.status, 422);
  assert.equal((await failure(client.getTask('task-nope'))).status, 404);
});
