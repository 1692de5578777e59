// Types of @modelfleet/client. Answers are the gateway's JSON (snake_case); options are
// camelCase, and top-level keys of a request body are sent in snake_case.

/** Accepted by every method, inside its options object; never sent to the gateway. */
export interface RequestOptions {
  signal?: AbortSignal;
  /** Overrides the client's timeoutMs for this request; 0 for none. */
  timeoutMs?: number;
}

export interface ClientOptions {
  /** The gateway's root, e.g. "http://localhost:8000" (a trailing /api is tolerated). */
  baseURL?: string;
  /** Sent as `Authorization: Bearer <apiToken>`. */
  apiToken?: string;
  /** Per request, up to the answer (the headers, for streams); 0 for none. Default 60000. */
  timeoutMs?: number;
  fetch?: typeof fetch;
}

export interface Page<T> {
  items: T[];
  total: number;
  page: number;
  size: number;
  pages: number;
}

export type TaskState = 'pending' | 'running' | 'succeeded' | 'failed';

export interface Model {
  id: string;
  name: string;
  display_name: string;
  description: string | null;
  framework: string;
  engine: string;
  model: string;
  /** The fleet's state: stopped, starting, ready, stopping, failed. */
  status: string;
  health: 'healthy' | 'unhealthy' | 'unknown';
  priority: number | null;
  created_at: string | null;
  updated_at: string | null;
  config: Record<string, unknown>;
  resource_requirements: Record<string, unknown>;
  tags: string[];
  aliases: string[];
  auto_start: boolean;
  source: string;
  failure_reason?: string | null;
  resource_usage?: Record<string, unknown>;
  performance_stats?: Record<string, unknown>;
  [key: string]: unknown;
}

/** A model's fields for createModel/updateModel; other ModelConfig fields are allowed. */
export interface ModelFields extends RequestOptions {
  name?: string;
  displayName?: string;
  description?: string;
  /** The engine: "llama.cpp", "vllm", "simulator", … */
  framework?: string;
  /** The weights; may also come as config.model_path or config.model_name. */
  model?: string;
  priority?: number;
  /** Engine settings, sent as given. */
  config?: Record<string, unknown>;
  resourceRequirements?: Record<string, unknown>;
  tags?: string[];
  aliases?: string[];
  autoStart?: boolean;
  [key: string]: unknown;
}

export interface ListModelsOptions extends RequestOptions {
  page?: number;
  size?: number;
  /** running, stopped, error, or a fleet state (ready, starting, …). */
  status?: string;
  framework?: string;
  tag?: string;
}

export interface LifecycleOptions extends RequestOptions {
  /** Stop with a short grace period. */
  force?: boolean;
  /** Seconds the gateway lets the task run before marking it failed. */
  timeout?: number;
  /** Answer once the task is over (a failed task rejects with its error). */
  wait?: boolean;
}

export interface LifecycleResult {
  success: boolean;
  message: string;
  task_id: string;
  model_name: string;
  /** The model's state, with `wait: true`. */
  status?: string;
}

export interface Task {
  id: string;
  task_id: string;
  kind: 'start' | 'stop' | 'restart';
  model: string;
  state: TaskState;
  message: string | null;
  created_at: string | null;
  updated_at: string | null;
}

export interface WaitTaskOptions {
  /** Give up (WAIT_TIMEOUT) after this long; default 300000. */
  timeoutMs?: number;
  intervalMs?: number;
  signal?: AbortSignal;
}

export interface ModelInfo {
  model_name: string;
  aliases: string[];
  engine: string;
  status: string;
  pid: number | null;
  idle_time_sec: number;
  mode: string;
  is_available: boolean;
  failure_reason: string | null;
  pending_requests: number;
  [key: string]: unknown;
}

export interface LogLine {
  timestamp: string;
  level: string;
  message: string;
}

export type LogEvent =
  | { type: 'historical' | 'realtime'; log: { timestamp: number; message: string } }
  | { type: 'historical_complete' }
  | { type: 'stream_end' | 'error'; message: string };

export interface LogsOptions extends RequestOptions {
  lines?: number;
}

export interface Usage {
  prompt_tokens: number;
  completion_tokens?: number;
  total_tokens: number;
}

export interface GenerateParams extends RequestOptions {
  modelId: string;
  prompt: string | string[];
  maxTokens?: number;
  temperature?: number;
  topP?: number;
  topK?: number;
  stop?: string | string[];
  stream?: boolean;
  [key: string]: unknown;
}

export interface Completion {
  id: string;
  model: string;
  created: number;
  choices: { text: string; index: number; finish_reason: string | null }[];
  usage?: Usage;
  [key: string]: unknown;
}

export interface CompletionChunk {
  id: string;
  choices: { text: string; index: number; finish_reason?: string | null }[];
  [key: string]: unknown;
}

export interface ChatMessage {
  role: 'system' | 'user' | 'assistant' | 'tool' | string;
  content: string | unknown[] | null;
  [key: string]: unknown;
}

export interface ChatParams extends RequestOptions {
  modelId: string;
  messages: ChatMessage[];
  maxTokens?: number;
  temperature?: number;
  topP?: number;
  stop?: string | string[];
  stream?: boolean;
  [key: string]: unknown;
}

export interface ChatCompletion {
  id: string;
  model: string;
  created: number;
  choices: { message: ChatMessage; index: number; finish_reason: string | null }[];
  usage?: Usage;
  [key: string]: unknown;
}

export interface ChatCompletionChunk {
  id: string;
  choices: { delta: Partial<ChatMessage>; index: number; finish_reason?: string | null }[];
  [key: string]: unknown;
}

export interface EmbeddingsParams extends RequestOptions {
  modelId: string;
  input: string | string[];
  encodingFormat?: 'float' | 'base64';
  [key: string]: unknown;
}

export interface Embeddings {
  data: { embedding: number[]; index: number }[];
  model: string;
  usage: Usage;
  [key: string]: unknown;
}

export interface SystemConfig {
  gpu_monitor_interval: number;
  max_concurrent_models: number;
  default_model_timeout: number;
  health_check_interval: number;
  log_level: string;
  alert_thresholds: Record<string, number>;
  [key: string]: unknown;
}

export interface ConfigFields extends RequestOptions {
  gpuMonitorInterval?: number;
  maxConcurrentModels?: number;
  defaultModelTimeout?: number;
  healthCheckInterval?: number;
  logLevel?: string;
  /** Sent as given: its keys are the gateway's (gpu_utilization_high, …). */
  alertThresholds?: Record<string, number>;
  [key: string]: unknown;
}

export class LLMInferenceClient {
  constructor(options?: ClientOptions);
  readonly baseURL: string;

  listModels(options?: ListModelsOptions): Promise<Page<Model>>;
  /** Creates the model and answers with its detail. */
  createModel(fields: ModelFields & { name: string }): Promise<Model>;
  getModel(id: string, options?: RequestOptions): Promise<Model>;
  updateModel(id: string, fields: ModelFields): Promise<Model>;
  deleteModel(id: string, options?: RequestOptions):
    Promise<{ success: boolean; message: string; id: string }>;

  startModel(id: string, options?: LifecycleOptions): Promise<LifecycleResult>;
  stopModel(id: string, options?: LifecycleOptions): Promise<LifecycleResult>;
  restartModel(id: string, options?: LifecycleOptions): Promise<LifecycleResult>;
  getTask(taskId: string, options?: RequestOptions): Promise<Task>;
  /** Answers with the finished task, failed or not; rejects with WAIT_TIMEOUT. */
  waitTask(taskId: string, options?: WaitTaskOptions): Promise<Task>;

  modelInfo(alias: string, options?: RequestOptions):
    Promise<{ success: boolean; model: ModelInfo }>;
  logs(id: string, options?: LogsOptions): Promise<{ logs: LogLine[] }>;
  streamLogs(alias: string, options?: LogsOptions): AsyncGenerator<LogEvent>;

  generate(params: GenerateParams & { stream: true }): Promise<AsyncGenerator<CompletionChunk>>;
  generate(params: GenerateParams & { stream?: false }): Promise<Completion>;
  chat(params: ChatParams & { stream: true }): Promise<AsyncGenerator<ChatCompletionChunk>>;
  chat(params: ChatParams & { stream?: false }): Promise<ChatCompletion>;
  embeddings(params: EmbeddingsParams): Promise<Embeddings>;

  health(options?: RequestOptions): Promise<Record<string, unknown>>;
  getConfig(options?: RequestOptions): Promise<SystemConfig>;
  /** Changes the given settings; answers with the whole configuration. */
  updateConfig(fields: ConfigFields): Promise<SystemConfig>;
}

/**
 * Every failure. `status` is set when the gateway answered (code: MODEL_NOT_FOUND,
 * MODEL_ALREADY_EXISTS, INVALID_PARAMETER, …); unset when it did not:
 * GATEWAY_UNREACHABLE, REQUEST_TIMEOUT, WAIT_TIMEOUT, INVALID_RESPONSE.
 */
export class ModelfleetError extends Error {
  readonly name: 'ModelfleetError';
  readonly status: number | undefined;
  readonly code: string;
  readonly type: string | undefined;
  readonly param: string | null;
  readonly details: unknown;
  /** Seconds, from the Retry-After header. */
  readonly retryAfter: number | undefined;
  readonly body: unknown;
}

export interface SSEEvent {
  event: string;
  data: string;
  id?: string;
}

export class SSEParser {
  /** Feed decoded text of any length; answers the events it completed. */
  push(text: string): SSEEvent[];
  /** The stream ended: answers what a trailing line completes (an unclosed event is dropped). */
  end(): SSEEvent[];
}

export function readSSE(
  body: ReadableStream<Uint8Array> | AsyncIterable<Uint8Array | string>,
): AsyncGenerator<SSEEvent>;
