// LLMInferenceClient: seed 002's JavaScript SDK for the modelfleet gateway.
//
// Conventions, the same for every method:
// - Options are camelCase; top-level keys of a request body are sent in snake_case
//   (maxTokens → max_tokens, displayName → display_name). Nested objects (a model's
//   `config`, `messages`, `alert_thresholds`) are sent as given.
// - Every method takes one options object (after the id, if any), which may also hold
//   `signal` (an AbortSignal) and `timeoutMs` (overrides the client's); these two are
//   never sent. Other keys are the request's body or query.
// - Answers are the gateway's JSON, unchanged (snake_case).
// - Failures reject with ModelfleetError (see errors.js).
// - Streams: generate/chat with `stream: true` resolve to an async iterable of chunks
//   that ends at the gateway's [DONE]; streamLogs is itself an async iterable. The
//   timeout covers the wait for the answer's headers, not the stream that follows.

import { ModelfleetError } from './errors.js';
import { Transport, chunks, parseData } from './transport.js';

const DEFAULT_TIMEOUT_MS = 60_000;
// The gateway's own default bound on a model start.
const DEFAULT_WAIT_MS = 300_000;
const TASK_DONE = new Set(['succeeded', 'failed']);

/** @typedef {import('../index.js').RequestOptions} RequestOptions */
/** @typedef {import('../index.js').LifecycleOptions} LifecycleOptions */
/** @typedef {import('../index.js').LifecycleResult} LifecycleResult */
/** @typedef {import('../index.js').Model} Model */
/** @typedef {import('../index.js').ModelFields} ModelFields */
/** @typedef {import('../index.js').Task} Task */

export class LLMInferenceClient {
  /**
   * @param {object} [options]
   * @param {string} [options.baseURL]  the gateway's root, e.g. http://host:8000
   * @param {string} [options.apiToken]  sent as `Authorization: Bearer <token>`
   * @param {number} [options.timeoutMs]  per request; 0 for none (default 60 000)
   * @param {typeof fetch} [options.fetch]  a fetch to use instead of the global one
   */
  constructor({ baseURL = 'http://localhost:8000', apiToken, timeoutMs = DEFAULT_TIMEOUT_MS,
    fetch } = {}) {
    /** @private */
    this.http = new Transport({ baseURL, apiToken, timeoutMs, fetch });
  }

  /** The gateway's root, as requests use it. */
  get baseURL() {
    return this.http.baseURL;
  }

  // -- models ---------------------------------------------------------------------------

  /**
   * One page of models: `{items, total, page, size, pages}`.
   * @param {import('../index.js').ListModelsOptions} [options]
   * @returns {Promise<import('../index.js').Page<Model>>}
   */
  listModels({ signal, timeoutMs, ...query } = {}) {
    return this.http.json('GET', '/api/models', { signal, timeoutMs, query });
  }

  /**
   * Creates a model and answers with its detail (so `model.id` is there).
   * @param {ModelFields} fields
   * @returns {Promise<Model>}
   */
  async createModel({ signal, timeoutMs, ...fields }) {
    const created = await this.http.json('POST', '/api/models',
      { signal, timeoutMs, body: snakeKeys(fields) });
    return this.getModel(created.id, { signal, timeoutMs });
  }

  /**
   * @param {string} id  the model's id, name or alias
   * @param {RequestOptions} [options]
   * @returns {Promise<Model>}
   */
  getModel(id, { signal, timeoutMs } = {}) {
    return this.http.json('GET', modelPath(id), { signal, timeoutMs });
  }

  /**
   * Changes the given fields (a given `config` is merged into the stored one).
   * @param {string} id
   * @param {ModelFields} fields
   * @returns {Promise<Model>}
   */
  updateModel(id, { signal, timeoutMs, ...fields }) {
    return this.http.json('PUT', modelPath(id), { signal, timeoutMs, body: snakeKeys(fields) });
  }

  /**
   * @param {string} id
   * @param {RequestOptions} [options]
   * @returns {Promise<{success: boolean, message: string, id: string}>}
   */
  deleteModel(id, { signal, timeoutMs } = {}) {
    return this.http.json('DELETE', modelPath(id), { signal, timeoutMs });
  }

  /**
   * Starts a model. Answers at once with `{success, message, task_id, model_name}`;
   * with `wait: true`, once the model is ready (a failed start rejects with its error).
   * `force` and `timeout` (seconds) are the gateway's; `timeoutMs` is this request's.
   * @param {string} id
   * @param {LifecycleOptions} [options]
   * @returns {Promise<LifecycleResult>}
   */
  startModel(id, options = {}) {
    return this.lifecycle(id, 'start', options);
  }

  /**
   * @param {string} id
   * @param {LifecycleOptions} [options]
   * @returns {Promise<LifecycleResult>}
   */
  stopModel(id, options = {}) {
    return this.lifecycle(id, 'stop', options);
  }

  /**
   * @param {string} id
   * @param {LifecycleOptions} [options]
   * @returns {Promise<LifecycleResult>}
   */
  restartModel(id, options = {}) {
    return this.lifecycle(id, 'restart', options);
  }

  /**
   * A lifecycle task: `{id, kind, model, state, message, …}`.
   * @param {string} taskId
   * @param {RequestOptions} [options]
   * @returns {Promise<Task>}
   */
  getTask(taskId, { signal, timeoutMs } = {}) {
    return this.http.json('GET', `/api/tasks/${segment(taskId)}`, { signal, timeoutMs });
  }

  /**
   * Polls a task until its state is succeeded or failed and answers with it (a failed
   * task is answered, not thrown: read `state` and `message`). Rejects with WAIT_TIMEOUT
   * after `timeoutMs` (default 300 000).
   * @param {string} taskId
   * @param {import('../index.js').WaitTaskOptions} [options]
   * @returns {Promise<Task>}
   */
  async waitTask(taskId, { timeoutMs = DEFAULT_WAIT_MS, intervalMs = 200, signal } = {}) {
    const deadline = Date.now() + timeoutMs;
    while (true) {
      const task = await this.getTask(taskId, { signal });
      if (TASK_DONE.has(task.state)) return task;
      if (Date.now() + intervalMs > deadline) {
        throw new ModelfleetError(`task ${taskId} is still ${task.state} after ${timeoutMs} ms`,
          { code: 'WAIT_TIMEOUT', body: task });
      }
      await new Promise((resolve) => setTimeout(resolve, intervalMs));
      signal?.throwIfAborted();
    }
  }

  /**
   * The fleet's live view of a model: `{success, model: {status, pid, …}}`.
   * @param {string} alias
   * @param {RequestOptions} [options]
   * @returns {Promise<{success: boolean, model: import('../index.js').ModelInfo}>}
   */
  modelInfo(alias, { signal, timeoutMs } = {}) {
    return this.http.json('GET', `${modelPath(alias)}/info`, { signal, timeoutMs });
  }

  /**
   * The last lines of a model's log: `{logs: [{timestamp, level, message}]}`.
   * @param {string} id
   * @param {import('../index.js').LogsOptions} [options]
   * @returns {Promise<{logs: import('../index.js').LogLine[]}>}
   */
  logs(id, { signal, timeoutMs, ...query } = {}) {
    return this.http.json('GET', `${modelPath(id)}/logs`, { signal, timeoutMs, query });
  }

  /**
   * A model's log as it grows: `historical` events for the last `lines` lines, one
   * `historical_complete`, then `realtime` events; `stream_end` or `error` when the log
   * closes. Leave the loop (or abort `signal`) to stop following.
   * @param {string} alias
   * @param {import('../index.js').LogsOptions} [options]
   * @returns {AsyncGenerator<import('../index.js').LogEvent>}
   */
  async *streamLogs(alias, { signal, timeoutMs, ...query } = {}) {
    const events = await this.http.events('GET', `${modelPath(alias)}/logs/stream`,
      { signal, timeoutMs, query });
    for await (const event of events) yield parseData(event.data);
  }

  // -- inference ------------------------------------------------------------------------

  /**
   * Text from a prompt; with `stream: true`, an async iterable of chunks.
   * @param {import('../index.js').GenerateParams} params
   * @returns {Promise<any>}
   */
  generate({ modelId, ...params }) {
    return this.infer(modelId, 'generate', params);
  }

  /**
   * A chat completion; with `stream: true`, an async iterable of chunks.
   * @param {import('../index.js').ChatParams} params
   * @returns {Promise<any>}
   */
  chat({ modelId, ...params }) {
    return this.infer(modelId, 'chat/completions', params);
  }

  /**
   * @param {import('../index.js').EmbeddingsParams} params
   * @returns {Promise<import('../index.js').Embeddings>}
   */
  embeddings({ modelId, ...params }) {
    return this.infer(modelId, 'embeddings', params);
  }

  // -- gateway --------------------------------------------------------------------------

  /**
   * The gateway's liveness, with each model's state.
   * @param {RequestOptions} [options]
   * @returns {Promise<Record<string, unknown>>}
   */
  health({ signal, timeoutMs } = {}) {
    return this.http.json('GET', '/health', { signal, timeoutMs });
  }

  /**
   * @param {RequestOptions} [options]
   * @returns {Promise<import('../index.js').SystemConfig>}
   */
  getConfig({ signal, timeoutMs } = {}) {
    return this.http.json('GET', '/api/config', { signal, timeoutMs });
  }

  /**
   * Changes the given settings; answers with the whole configuration.
   * @param {import('../index.js').ConfigFields} fields
   * @returns {Promise<import('../index.js').SystemConfig>}
   */
  updateConfig({ signal, timeoutMs, ...fields }) {
    return this.http.json('PUT', '/api/config', { signal, timeoutMs, body: snakeKeys(fields) });
  }

  // -- transport ------------------------------------------------------------------------

  /**
   * @private
   * @param {string} id
   * @param {'start' | 'stop' | 'restart'} action
   * @param {LifecycleOptions} options
   */
  lifecycle(id, action, { force, timeout, wait, signal, timeoutMs } = {}) {
    const body = force === undefined && timeout === undefined ? undefined : { force, timeout };
    return this.http.json('POST', `${modelPath(id)}/${action}`,
      { signal, timeoutMs, body, query: { wait: wait ? 'true' : undefined } });
  }

  /**
   * @private
   * @param {string} modelId
   * @param {string} route
   * @param {Record<string, unknown> & RequestOptions} params
   */
  async infer(modelId, route, { signal, timeoutMs, ...params }) {
    const path = `${modelPath(modelId)}/${route}`;
    const body = snakeKeys(params);
    if (!body.stream) return this.http.json('POST', path, { body, signal, timeoutMs });
    const events = await this.http.events('POST', path, { body, signal, timeoutMs });
    return chunks(events);
  }
}

/** @param {unknown} id */
function segment(id) {
  if (typeof id !== 'string' || !id) throw new TypeError(`expected an id, got ${String(id)}`);
  return encodeURIComponent(id);
}

/** @param {unknown} id */
function modelPath(id) {
  return `/api/models/${segment(id)}`;
}

/**
 * Top-level camelCase keys in snake_case; undefined values dropped.
 * @param {Record<string, unknown>} fields
 */
function snakeKeys(fields) {
  /** @type {Record<string, unknown>} */
  const out = {};
  for (const [key, value] of Object.entries(fields ?? {})) {
    if (value !== undefined) out[key.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`)] = value;
  }
  return out;
}
