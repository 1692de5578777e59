"""The built-in engine: a small OpenAI-compatible inference server on transformers + torch.

The gateway starts it as a child process
(``python -m modelfleet.engines.builtin_server --model PATH --port P``) and relays
requests to it; it serves one model directory, for one task:

- ``chat``: ``/v1/chat/completions`` and ``/v1/completions`` from a causal LM
  (:mod:`.generator`, a token-by-token loop with a KV cache, run off the event loop);
- ``embed``: ``/v1/embeddings``, ``/v1/rerank`` and ``/v1/score`` from a
  sentence-transformers model (:mod:`.embedder`);
- ``rerank``: ``/v1/rerank`` and ``/v1/score`` from a cross-encoder.

Modules: :mod:`.config` (arguments, task/device/dtype resolution), :mod:`.validate` and
:mod:`.protocol` (request parsing), :mod:`.sampling` and :mod:`.detokenizer` (pieces of the
generation loop), :mod:`.runtime` (worker pool, cancellation, statistics), :mod:`.httpio`
and :mod:`.errors` (bodies, responses, error rendering), :mod:`.openai_format` (response
objects), :mod:`.routes_generate`, :mod:`.routes_pooling` and :mod:`.app` (ASGI routes),
:mod:`.server` (process life: loading, uvicorn, parent watchdog).

Nothing here is imported by the gateway: torch and transformers load only in the engine
process.
"""
