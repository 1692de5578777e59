// @modelfleet/client: the JavaScript SDK of the modelfleet gateway (seed 002's client).

export { LLMInferenceClient } from './client.js';
export { ModelfleetError } from './errors.js';
export { SSEParser, readSSE } from './sse.js';
