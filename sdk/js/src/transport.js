// The HTTP exchange under LLMInferenceClient: one request with its timeout, the
// caller's AbortSignal and the Bearer token; answers read as JSON or as SSE events; and
// every failure on the way translated into ModelfleetError (see errors.js).

import { ModelfleetError, errorOfEvent, errorOfResponse } from './errors.js';
import { readSSE } from './sse.js';

/**
 * What a request takes: its query and body, and the caller's signal and timeout.
 * @typedef {import('../index.js').RequestOptions
 *   & {query?: Record<string, unknown>, body?: unknown}} Call
 */

export class Transport {
  /**
   * @param {object} options
   * @param {string} options.baseURL
   * @param {string} [options.apiToken]
   * @param {number} options.timeoutMs
   * @param {typeof fetch} [options.fetch]
   */
  constructor({ baseURL, apiToken, timeoutMs, fetch: fetchImpl }) {
    // Seed 002 calls http://host:8000/api the base URL; the routes add /api themselves.
    this.baseURL = baseURL.replace(/\/+$/, '').replace(/\/api(\/v1)?$/, '');
    this.apiToken = apiToken;
    this.timeoutMs = timeoutMs;
    const found = fetchImpl ?? globalThis.fetch;
    if (typeof found !== 'function') {
      throw new TypeError('no fetch available: use Node.js 18 or later, or pass options.fetch');
    }
    // Called unbound, as browsers require of their fetch.
    /** @type {typeof fetch} */
    this.fetchImpl = (input, init) => found(input, init);
  }

  /**
   * A request whose answer is JSON; the timeout covers the whole exchange.
   * @param {string} method
   * @param {string} path
   * @param {Call} options
   * @returns {Promise<any>}
   */
  async json(method, path, options) {
    const call = this.open(method, path, options);
    try {
      const response = await call.send();
      const text = await response.text().catch((e) => { throw call.translate(e); });
      return text ? parseData(text) : null;
    } finally {
      call.release();
    }
  }

  /**
   * A request whose answer is an SSE stream; resolves once the headers are in.
   * @param {string} method
   * @param {string} path
   * @param {Call} options
   */
  async events(method, path, options) {
    const call = this.open(method, path, options, 'text/event-stream');
    try {
      const response = await call.send();
      call.stopTimer();
      return follow(call, /** @type {ReadableStream<Uint8Array>} */ (response.body));
    } catch (e) {
      call.release();
      throw e;
    }
  }

  /**
   * A prepared request: `send()` it; `release()` it when done with the answer.
   * @param {string} method
   * @param {string} path
   * @param {Call} options
   * @param {string} [accept]
   */
  open(method, path, { query, body, signal, timeoutMs = this.timeoutMs },
    accept = 'application/json') {
    const url = this.baseURL + path + queryString(query);
    /** @type {Record<string, string>} */
    const headers = { accept };
    if (body !== undefined) headers['content-type'] = 'application/json';
    if (this.apiToken) headers.authorization = `Bearer ${this.apiToken}`;
    const controller = new AbortController();
    let timedOut = false;
    const timer = timeoutMs > 0 && Number.isFinite(timeoutMs)
      ? setTimeout(() => { timedOut = true; controller.abort(); }, timeoutMs)
      : undefined;
    const onAbort = () => controller.abort(signal?.reason);
    if (signal?.aborted) onAbort();
    else signal?.addEventListener('abort', onAbort, { once: true });
    const fetchImpl = this.fetchImpl;
    const baseURL = this.baseURL;
    return {
      controller,
      stopTimer: () => clearTimeout(timer),
      release() {
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
      },
      /** @param {unknown} error */
      translate(error) {
        if (error instanceof ModelfleetError) return error;
        if (timedOut) {
          return new ModelfleetError(`${method} ${path}: no answer within ${timeoutMs} ms`,
            { code: 'REQUEST_TIMEOUT', cause: error });
        }
        if (signal?.aborted) return signal.reason ?? error; // the caller's own abort
        const reason = /** @type {any} */ (error)?.cause?.message ?? String(error);
        return new ModelfleetError(`cannot reach the gateway at ${baseURL}: ${reason}`,
          { code: 'GATEWAY_UNREACHABLE', cause: error });
      },
      async send() {
        let response;
        try {
          response = await fetchImpl(url, {
            method, headers, signal: controller.signal,
            body: body === undefined ? undefined : JSON.stringify(body),
          });
        } catch (e) {
          throw this.translate(e);
        }
        if (!response.ok) throw await errorOfResponse(response);
        return response;
      },
    };
  }
}

/**
 * The SSE events of an open answer; closes the connection when the loop is left.
 * @param {{controller: AbortController, release(): void, translate(e: unknown): unknown}} call
 * @param {ReadableStream<Uint8Array>} body
 */
async function* follow(call, body) {
  try {
    yield* readSSE(body);
  } catch (e) {
    throw call.translate(e);
  } finally {
    call.release();
    call.controller.abort();
  }
}

/**
 * Inference chunks: JSON data events up to [DONE]; an error event rejects.
 * @param {AsyncIterable<import('./sse.js').SSEEvent>} events
 */
export async function* chunks(events) {
  for await (const event of events) {
    if (event.data === '[DONE]') return;
    const data = parseData(event.data);
    const error = errorOfEvent(data);
    if (error) throw error;
    yield data;
  }
}

/** @param {string} text */
export function parseData(text) {
  try {
    return JSON.parse(text);
  } catch {
    throw new ModelfleetError(`the gateway answered something that is not JSON: ${text.slice(0, 200)}`,
      { code: 'INVALID_RESPONSE', body: text });
  }
}

/** @param {Record<string, unknown> | undefined} query */
function queryString(query) {
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(query ?? {})) {
    if (value !== undefined && value !== null) params.append(key, String(value));
  }
  const text = params.toString();
  return text ? `?${text}` : '';
}
