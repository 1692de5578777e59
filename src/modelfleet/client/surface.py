"""The SDK's methods, declared once for the blocking and the asyncio client.

Each attribute of :class:`Surface` wraps one function of :mod:`modelfleet.client.ops`.
Read from a :class:`~modelfleet.client.Client` it is a method that runs the operation
and returns its result (streams: an iterator); read from an
:class:`~modelfleet.client.AsyncClient` it returns an awaitable (streams: an async
iterator). Parameters, defaults and docstrings are the operation's.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, Self, TypeVar, overload

import httpx

from modelfleet import __version__
from modelfleet.client import ops
from modelfleet.client.ops import Op, Stream

if TYPE_CHECKING:
    from modelfleet.client.aio import AsyncClient
    from modelfleet.client.sync import Client

P = ParamSpec("P")
T = TypeVar("T")
C = TypeVar("C")

DEFAULT_URL = "http://127.0.0.1:8000"
# Generation and ``?wait=true`` lifecycle calls can take minutes; connecting may not.
DEFAULT_TIMEOUT = 600.0


def _bind(build: Callable[P, Any], runner: Callable[[Any], Any]) -> Callable[P, Any]:
    @functools.wraps(build)
    def method(*args: P.args, **kwargs: P.kwargs) -> Any:
        return runner(build(*args, **kwargs))

    return method


class operation(Generic[P, T]):  # a descriptor: lower case, like ``property``
    """A request-and-answer method: ``T`` from a Client, ``Awaitable[T]`` from an
    AsyncClient."""

    def __init__(self, build: Callable[P, Op[T]]):
        self.build = build
        self.__doc__ = build.__doc__

    @overload
    def __get__(self, obj: None, owner: type[Any]) -> Self: ...
    @overload
    def __get__(self, obj: Client, owner: type[Any]) -> Callable[P, T]: ...
    @overload
    def __get__(self, obj: AsyncClient, owner: type[Any]) -> Callable[P, Awaitable[T]]: ...

    def __get__(self, obj: Client | AsyncClient | None, owner: type[Any]) -> Any:
        return self if obj is None else _bind(self.build, obj._run)


class streaming(Generic[P, C]):
    """A streaming method: ``Iterator[C]`` from a Client, ``AsyncIterator[C]`` from an
    AsyncClient. The connection closes when the stream ends or the iterator is closed:
    at once when a ``for`` loop is left; for ``async for``, wrap the iterator in
    ``contextlib.aclosing`` to close it at once rather than when it is collected."""

    def __init__(self, build: Callable[P, Stream[C]]):
        self.build = build
        self.__doc__ = build.__doc__

    @overload
    def __get__(self, obj: None, owner: type[Any]) -> Self: ...
    @overload
    def __get__(self, obj: Client, owner: type[Any]) -> Callable[P, Iterator[C]]: ...
    @overload
    def __get__(self, obj: AsyncClient, owner: type[Any]) -> Callable[P, AsyncIterator[C]]: ...

    def __get__(self, obj: Client | AsyncClient | None, owner: type[Any]) -> Any:
        return self if obj is None else _bind(self.build, obj._stream)


class Surface:
    """What both clients can do, and the settings they share.

    ``base_url`` is the gateway (no ``/api``); ``token`` is sent as
    ``Authorization: Bearer``; ``timeout`` bounds each read, in seconds.
    Errors are :class:`~modelfleet.client.ModelfleetError` subclasses.
    """

    def __init__(self, base_url: str = DEFAULT_URL, token: str | None = None,
                 timeout: float = DEFAULT_TIMEOUT):
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.timeout = timeout

    def _http_options(self) -> dict[str, Any]:
        headers = {"User-Agent": f"modelfleet-client/{__version__}"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        return {"base_url": self.base_url, "headers": headers,
                "timeout": httpx.Timeout(self.timeout, connect=min(self.timeout, ops.CONNECT_S))}

    # models (seed 002)
    list_models = operation(ops.list_models)
    list_all_models = operation(ops.list_all_models)
    create_model = operation(ops.create_model)
    get_model = operation(ops.get_model)
    update_model = operation(ops.update_model)
    delete_model = operation(ops.delete_model)
    # lifecycle
    start_model = operation(ops.start_model)
    stop_model = operation(ops.stop_model)
    restart_model = operation(ops.restart_model)
    get_task = operation(ops.get_task)
    wait_task = operation(ops.wait_task)
    # live view and logs (seed 003)
    model_info = operation(ops.model_info)
    all_models_info = operation(ops.all_models_info)
    logs = operation(ops.logs)
    stream_logs = streaming(ops.stream_logs)
    # configuration and health
    get_config = operation(ops.get_config)
    update_config = operation(ops.update_config)
    health = operation(ops.health)
    # inference, the model named in the path (seed 002)
    generate = operation(ops.generate)
    generate_stream = streaming(ops.generate_stream)
    chat = operation(ops.chat)
    chat_stream = streaming(ops.chat_stream)
    embeddings = operation(ops.embeddings)
