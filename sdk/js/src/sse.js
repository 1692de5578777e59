// Server-sent events: an incremental parser that takes text in chunks of any size.
//
// Follows the WHATWG "event stream" rules that matter to this gateway: lines end with
// \n, \r\n or \r (a \r at the end of one chunk may be half of a \r\n split across two),
// "data" lines of one event are joined with \n, lines starting with ":" are comments
// (the gateway's keep-alives), and an event without data is not dispatched.

/**
 * @typedef {object} SSEEvent
 * @property {string} event  the event type ("message" when the stream names none)
 * @property {string} data   the data lines, joined with "\n"
 * @property {string} [id]   the last event id seen, if any
 */

export class SSEParser {
  constructor() {
    this.buffer = '';
    /** @type {string[]} */
    this.data = [];
    this.event = '';
    /** @type {string | undefined} */
    this.lastId = undefined;
    this.started = false;
  }

  /**
   * Feed decoded text; returns the events it completed.
   * @param {string} text
   * @returns {SSEEvent[]}
   */
  push(text) {
    if (!this.started && text) {
      this.started = true;
      if (text.charCodeAt(0) === 0xfeff) text = text.slice(1); // a byte-order mark
    }
    this.buffer += text;
    /** @type {SSEEvent[]} */
    const events = [];
    let start = 0;
    for (let i = 0; i < this.buffer.length; i++) {
      const c = this.buffer[i];
      if (c !== '\n' && c !== '\r') continue;
      if (c === '\r') {
        if (i + 1 === this.buffer.length) break; // maybe a \r\n cut in two: wait
        if (this.buffer[i + 1] === '\n') {
          this.line(this.buffer.slice(start, i), events);
          start = ++i + 1;
          continue;
        }
      }
      this.line(this.buffer.slice(start, i), events);
      start = i + 1;
    }
    this.buffer = this.buffer.slice(start);
    return events;
  }

  /**
   * The stream ended. A trailing lone \r still ends its line; an event that was not
   * closed by a blank line is discarded, as the standard says.
   * @returns {SSEEvent[]}
   */
  end() {
    /** @type {SSEEvent[]} */
    const events = [];
    if (this.buffer.endsWith('\r')) this.line(this.buffer.slice(0, -1), events);
    this.buffer = '';
    this.data = [];
    this.event = '';
    return events;
  }

  /**
   * @param {string} line
   * @param {SSEEvent[]} events
   */
  line(line, events) {
    if (line === '') {
      if (this.data.length) {
        events.push({ event: this.event || 'message', data: this.data.join('\n'),
          ...(this.lastId === undefined ? {} : { id: this.lastId }) });
      }
      this.data = [];
      this.event = '';
      return;
    }
    if (line[0] === ':') return;
    const colon = line.indexOf(':');
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? '' : line.slice(colon + 1);
    if (value[0] === ' ') value = value.slice(1);
    if (field === 'data') this.data.push(value);
    else if (field === 'event') this.event = value;
    else if (field === 'id' && !value.includes('\0')) this.lastId = value;
    // "retry" and unknown fields are of no use to a client that does not reconnect.
  }
}

/**
 * The events of a byte stream: a fetch body, or any async iterable of bytes or text.
 * Leaving the loop early cancels the stream (which closes the connection).
 * @param {ReadableStream<Uint8Array> | AsyncIterable<Uint8Array | string>} body
 * @returns {AsyncGenerator<SSEEvent>}
 */
export async function* readSSE(body) {
  const parser = new SSEParser();
  const decoder = new TextDecoder();
  for await (const chunk of chunksOf(body)) {
    const text = typeof chunk === 'string' ? chunk : decoder.decode(chunk, { stream: true });
    yield* parser.push(text);
  }
  yield* parser.push(decoder.decode());
  yield* parser.end();
}

/**
 * Chunks through a reader where there is one: not every browser can iterate a
 * ReadableStream with for-await.
 * @param {ReadableStream<Uint8Array> | AsyncIterable<Uint8Array | string>} body
 * @returns {AsyncGenerator<Uint8Array | string>}
 */
async function* chunksOf(body) {
  if (!('getReader' in body)) {
    yield* body;
    return;
  }
  const reader = body.getReader();
  let done = false;
  try {
    while (true) {
      const next = await reader.read();
      if (next.done) {
        done = true;
        return;
      }
      yield next.value;
    }
  } finally {
    if (!done) await reader.cancel().catch(() => {});
    reader.releaseLock();
  }
}
