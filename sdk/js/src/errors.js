// The one error class of the SDK, and how gateway answers and transport failures become it.
//
//   ModelfleetError
//     status set     the gateway answered with an error: code, type, param and details
//                    come from its {"error": {...}} body (MODEL_NOT_FOUND, ...)
//     status unset   no usable answer: GATEWAY_UNREACHABLE (connection failed or broke),
//                    REQUEST_TIMEOUT (timeoutMs passed), WAIT_TIMEOUT (waitTask gave up),
//                    INVALID_RESPONSE (a body that is not JSON); a stream's error event
//                    keeps the gateway's code
//
// A request aborted through the caller's own AbortSignal is not translated: it rejects
// with the signal's reason, as fetch does.

export class ModelfleetError extends Error {
  /**
   * @param {string} message
   * @param {object} [fields]
   * @param {number} [fields.status]
   * @param {string} [fields.code]
   * @param {string} [fields.type]
   * @param {string | null} [fields.param]
   * @param {unknown} [fields.details]
   * @param {number} [fields.retryAfter]
   * @param {unknown} [fields.body]
   * @param {unknown} [fields.cause]
   */
  constructor(message, fields = {}) {
    super(message, fields.cause === undefined ? undefined : { cause: fields.cause });
    this.name = 'ModelfleetError';
    /** HTTP status; undefined when no answer came. */
    this.status = fields.status;
    /** Upper-case code: the gateway's (MODEL_NOT_FOUND…) or the SDK's. */
    this.code = fields.code ?? 'UNKNOWN_ERROR';
    this.type = fields.type;
    /** The request field at fault, when the gateway names one. */
    this.param = fields.param ?? null;
    this.details = fields.details ?? null;
    /** Seconds to wait before retrying (the Retry-After header), if given. */
    this.retryAfter = fields.retryAfter;
    /** The parsed error body (or its text when it was not JSON). */
    this.body = fields.body;
  }
}

/**
 * The error an unsuccessful response stands for. Reads the body.
 * @param {Response} response
 * @returns {Promise<ModelfleetError>}
 */
export async function errorOfResponse(response) {
  const text = await response.text().catch(() => '');
  /** @type {any} */
  let body = text;
  try {
    body = JSON.parse(text);
  } catch {
    // not JSON (a proxy in between, say): the text is the message
  }
  const retry = Number.parseFloat(response.headers.get('retry-after') ?? '');
  const fields = {
    status: response.status,
    body,
    retryAfter: Number.isFinite(retry) ? retry : undefined,
  };
  const error = body && typeof body === 'object' ? body.error : undefined;
  if (error && typeof error === 'object') {
    return new ModelfleetError(error.message ?? `HTTP ${response.status}`, {
      ...fields, code: error.code ?? `HTTP_${response.status}`, type: error.type,
      param: error.param, details: error.details,
    });
  }
  const message = typeof error === 'string' ? error : text || response.statusText;
  return new ModelfleetError(message || `HTTP ${response.status}`,
    { ...fields, code: `HTTP_${response.status}` });
}

/**
 * The error an SSE data object carries when a stream failed after it began, if any.
 * @param {any} data
 * @returns {ModelfleetError | undefined}
 */
export function errorOfEvent(data) {
  const error = data && typeof data === 'object' ? data.error : undefined;
  if (!error) return undefined;
  if (typeof error !== 'object') return new ModelfleetError(String(error), { body: data });
  return new ModelfleetError(error.message ?? 'stream failed', {
    code: error.code, type: error.type, param: error.param, details: error.details, body: data,
  });
}
