"""Every SDK operation, written once and free of I/O.

An operation is a generator: it yields the :class:`Call` to make (or a :class:`Sleep`),
is sent back the JSON body of the answer (errors were already raised by
:func:`checked`), and returns the typed result. :class:`~modelfleet.client.Client`
and :class:`~modelfleet.client.AsyncClient` only drive these generators over httpx, one
blocking and one awaiting, so both speak exactly the same protocol. Streaming
operations return a :class:`Stream` instead: the call that opens it and the decoder of
its events.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel

from modelfleet.client import types as t
from modelfleet.client.errors import MalformedResponseError, OperationTimeout, error_from
from modelfleet.client.sse import Decoder, SSEReader, completion_decoder, log_event
from modelfleet.client.types import validated

T = TypeVar("T")
C = TypeVar("C")
M = TypeVar("M", bound=BaseModel)

CONNECT_S = 10.0
MAX_PAGE_SIZE = 100  # the gateway's bound on ``size``
# A lifecycle call with ``?wait=true`` and no timeout of its own may take as long as a
# large model takes to load.
WAIT_READ_S = 3600.0


@dataclass(frozen=True, slots=True)
class Call:
    """One HTTP request: ``path`` is relative to the client's base URL; ``timeout``
    (seconds) overrides the client's read timeout."""

    method: str
    path: str
    params: dict[str, Any] | None = None
    json: Any = None
    timeout: float | None = None

    def httpx_args(self) -> dict[str, Any]:
        """The keyword arguments of ``httpx.Client.request`` (and ``stream``)."""
        timeout = httpx.USE_CLIENT_DEFAULT if self.timeout is None \
            else httpx.Timeout(self.timeout, connect=CONNECT_S)
        return {"method": self.method, "url": self.path, "params": self.params,
                "json": self.json, "timeout": timeout}


@dataclass(frozen=True, slots=True)
class Sleep:
    seconds: float


@dataclass(frozen=True, slots=True)
class Stream(Generic[C]):
    """A streaming operation: the call that opens the event stream and its decoder."""

    call: Call
    decode: Decoder[C]

    def reader(self) -> SSEReader[C]:
        return SSEReader(self.decode)


Step = Call | Sleep
Op = Generator[Step, Any, T]


@dataclass(frozen=True, slots=True)
class Done(Generic[T]):
    value: T


def advance(op: Op[T], reply: Any) -> Step | Done[T]:
    """Send ``reply`` (None to begin) into ``op``: its next step, or Done with its result."""
    try:
        return op.send(reply)
    except StopIteration as stop:
        return Done(stop.value)


def checked(resp: httpx.Response) -> Any:
    """The JSON body of a successful answer (read already); the matching error else."""
    try:
        body, is_json = (resp.json() if resp.content else None), True
    except ValueError:
        body, is_json = None, False
    if resp.is_error:
        raise error_from(resp.status_code, body, text=resp.text,
                         retry_after=resp.headers.get("retry-after"))
    if not is_json:
        raise MalformedResponseError(f"{resp.request.url.path} answered {resp.status_code} "
                                     f"with a body that is not JSON: {resp.text[:200]!r}",
                                     status=resp.status_code, body=resp.text)
    return body


def member(body: Any, key: str) -> Any:
    if not isinstance(body, dict) or key not in body:
        raise MalformedResponseError(f"the answer has no {key!r}", body=body)
    return body[key]


def _given(**values: Any) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


def _model_path(model_id: str, *rest: str) -> str:
    return "/".join(("/api/models", quote(model_id, safe=""), *rest))


def _fetch(call: Call, parse: Callable[[Any], T]) -> Op[T]:
    body = yield call
    return parse(body)


def _parser(model: type[M]) -> Callable[[Any], M]:
    return lambda body: validated(model, body)


# -- models ----------------------------------------------------------------------------


def _list_call(page: int, size: int, status: str | None, framework: str | None,
               tag: str | None) -> Call:
    return Call("GET", "/api/models", params=_given(
        page=page, size=size, status=status, framework=framework, tag=tag))


def list_models(page: int = 1, size: int = 20, status: str | None = None,
                framework: str | None = None, tag: str | None = None) -> Op[t.ModelPage]:
    """One page of models; ``status`` is running, stopped, error or a fleet state."""
    return _fetch(_list_call(page, size, status, framework, tag), _parser(t.ModelPage))


def list_all_models(status: str | None = None, framework: str | None = None,
                    tag: str | None = None) -> Op[list[t.Model]]:
    """Every model that matches, page after page."""
    models: list[t.Model] = []
    page = 1
    while True:
        body = yield _list_call(page, MAX_PAGE_SIZE, status, framework, tag)
        found = validated(t.ModelPage, body)
        models.extend(found.items)
        if page >= found.pages or not found.items:
            return models
        page += 1


def create_model(name: str, framework: str | None = None,
                 config: dict[str, Any] | None = None, **fields: Any) -> Op[t.Model]:
    """Create a model (seed 002's fields, or ModelConfig's such as ``model``,
    ``aliases``, ``auto_start``) and return it as the gateway now shows it."""
    body = {"name": name, **_given(framework=framework, config=config), **fields}
    created = yield Call("POST", "/api/models", json=body)
    return (yield from get_model(str(member(created, "id"))))


def get_model(model_id: str) -> Op[t.Model]:
    """A model by id, name or alias."""
    return _fetch(Call("GET", _model_path(model_id)), _parser(t.Model))


def update_model(model_id: str, **fields: Any) -> Op[t.Model]:
    """Change the given fields (``config`` is merged key by key); returns the model."""
    return _fetch(Call("PUT", _model_path(model_id), json=fields), _parser(t.Model))


def delete_model(model_id: str) -> Op[t.Ack]:
    """Stop the model if it runs and forget it."""
    return _fetch(Call("DELETE", _model_path(model_id)), _parser(t.Ack))


# -- lifecycle -------------------------------------------------------------------------


def _lifecycle(kind: str, model_id: str, force: bool, timeout: float | None,
               wait: bool) -> Op[t.Task]:
    read = (timeout + 30 if timeout else WAIT_READ_S) if wait else None
    answer = yield Call("POST", _model_path(model_id, kind),
                        params={"wait": "true"} if wait else None,
                        json=_given(force=force, timeout=timeout), timeout=read)
    return (yield from get_task(str(member(answer, "task_id"))))


def start_model(model_id: str, force: bool = False, timeout: float | None = None,
                wait: bool = False) -> Op[t.Task]:
    """Start a model in the background and return its task; ``wait`` answers once it is
    ready, and raises the error that failed it (UnavailableError) if it did not start.
    ``timeout`` (seconds) bounds the task on the gateway."""
    return _lifecycle("start", model_id, force, timeout, wait)


def stop_model(model_id: str, force: bool = False, timeout: float | None = None,
               wait: bool = False) -> Op[t.Task]:
    """Stop a model (``force``: a short grace before it is killed); see start_model."""
    return _lifecycle("stop", model_id, force, timeout, wait)


def restart_model(model_id: str, force: bool = False, timeout: float | None = None,
                  wait: bool = False) -> Op[t.Task]:
    """Stop, then start a model; see start_model."""
    return _lifecycle("restart", model_id, force, timeout, wait)


def get_task(task_id: str) -> Op[t.Task]:
    return _fetch(Call("GET", f"/api/tasks/{quote(task_id, safe='')}"), _parser(t.Task))


def wait_task(task_id: str, timeout: float = 300.0, interval: float = 0.25) -> Op[t.Task]:
    """Poll a task until it succeeded or failed (a failed task is returned, not raised);
    OperationTimeout after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        task = yield from get_task(task_id)
        if task.done:
            return task
        if time.monotonic() >= deadline:
            raise OperationTimeout(f"task {task_id} is still {task.state} after {timeout:g}s")
        yield Sleep(interval)


# -- live view and logs ----------------------------------------------------------------


def model_info(alias: str) -> Op[t.ModelInfo]:
    """The fleet's live view of one model (status, pid, idle time, last log line…)."""
    return _fetch(Call("GET", _model_path(alias, "info")),
                  lambda body: validated(t.ModelInfo, member(body, "model")))


def all_models_info() -> Op[t.FleetInfo]:
    return _fetch(Call("GET", _model_path("all-models", "info")), _parser(t.FleetInfo))


def logs(model_id: str, lines: int = 100) -> Op[list[t.LogLine]]:
    """The last ``lines`` lines of a model's engine log."""
    return _fetch(Call("GET", _model_path(model_id, "logs"), params={"lines": lines}),
                  lambda body: [validated(t.LogLine, x) for x in member(body, "logs")])


def stream_logs(alias: str, lines: int = 100) -> Stream[t.LogEvent]:
    """The last ``lines`` lines (``historical``), ``historical_complete``, then each new
    line (``realtime``) until the log ends (``stream_end``/``error``) or the caller
    stops reading."""
    return Stream(Call("GET", _model_path(alias, "logs", "stream"), params={"lines": lines}),
                  log_event)


# -- configuration and health ----------------------------------------------------------


def get_config() -> Op[t.Config]:
    return _fetch(Call("GET", "/api/config"), _parser(t.Config))


def update_config(**fields: Any) -> Op[t.Config]:
    """Change the given settings (``alert_thresholds`` merged key by key); returns the
    whole configuration."""
    return _fetch(Call("PUT", "/api/config", json=fields), _parser(t.Config))


def health() -> Op[t.Health]:
    return _fetch(Call("GET", "/health"), _parser(t.Health))


# -- inference (seed 002: the model is in the path) ------------------------------------


def _sampling(stream: bool, max_tokens: int | None, temperature: float | None,
              extra: dict[str, Any]) -> dict[str, Any]:
    if "stream" in extra:
        raise TypeError("pass no 'stream': use generate_stream() or chat_stream() to stream")
    return {**_given(max_tokens=max_tokens, temperature=temperature), **extra,
            **({"stream": True} if stream else {})}


def generate(model_id: str, prompt: str, *, max_tokens: int | None = None,
             temperature: float | None = None, **extra: Any) -> Op[t.Generation]:
    """Complete ``prompt``; ``extra`` may hold top_p, top_k, stop… (seed 002)."""
    body = {"prompt": prompt, **_sampling(False, max_tokens, temperature, extra)}
    return _fetch(Call("POST", _model_path(model_id, "generate"), json=body),
                  _parser(t.Generation))


def generate_stream(model_id: str, prompt: str, *, max_tokens: int | None = None,
                    temperature: float | None = None,
                    **extra: Any) -> Stream[t.GenerationChunk]:
    """generate(), as chunks while they are produced."""
    body = {"prompt": prompt, **_sampling(True, max_tokens, temperature, extra)}
    return Stream(Call("POST", _model_path(model_id, "generate"), json=body),
                  completion_decoder(t.GenerationChunk))


def chat(model_id: str, messages: list[dict[str, Any]], *, max_tokens: int | None = None,
         temperature: float | None = None, **extra: Any) -> Op[t.ChatCompletion]:
    """An OpenAI chat completion from the model named in the path."""
    body = {"messages": messages, **_sampling(False, max_tokens, temperature, extra)}
    return _fetch(Call("POST", _model_path(model_id, "chat", "completions"), json=body),
                  _parser(t.ChatCompletion))


def chat_stream(model_id: str, messages: list[dict[str, Any]], *,
                max_tokens: int | None = None, temperature: float | None = None,
                **extra: Any) -> Stream[t.ChatCompletionChunk]:
    """chat(), as chunks while they are produced."""
    body = {"messages": messages, **_sampling(True, max_tokens, temperature, extra)}
    return Stream(Call("POST", _model_path(model_id, "chat", "completions"), json=body),
                  completion_decoder(t.ChatCompletionChunk))


def embeddings(model_id: str, input: str | list[str], **extra: Any) -> Op[t.Embeddings]:
    """Embed one text or several; ``t.Embeddings.vectors`` lists them in input order."""
    return _fetch(Call("POST", _model_path(model_id, "embeddings"),
                       json={"input": input, **extra}), _parser(t.Embeddings))
