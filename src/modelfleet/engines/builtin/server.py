"""The engine process's life: watch the parent, load the model, serve, stop.

Order matters to the gateway, which starts this process and polls ``GET /health``:
the model is loaded (and warmed up) *before* the port is bound, so a 200 from
``/health`` means ready. The parent watchdog starts first of all, so an engine whose
gateway died while it was loading does not live on as an orphan holding a GPU.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import uvicorn

from modelfleet.engines.builtin.config import (
    EngineArgs,
    configure_torch_threads,
    detect_task,
    resolve_device,
    resolve_dtype,
)

if TYPE_CHECKING:
    from modelfleet.engines.builtin.context import ServingContext

log = logging.getLogger("modelfleet.engines.builtin")

PARENT_ENV = "MODELFLEET_PARENT_PID"


def configure_logging() -> None:
    """Engine lines go to stdout, one flushed line each (the gateway captures stdout)."""
    if log.handlers:
        return
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(asctime)s builtin %(levelname)s %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False


class ParentWatchdog:
    """Ends the process once its parent is gone.

    The usual case: the gateway started this process directly, so ``os.getppid()``
    equals the pid it passed, and changes when the gateway dies (the orphan is
    reparented). When something sits in between (a shell, a wrapper) the pid is not the
    direct parent at start, and the check falls back to whether that pid still exists.

    It first asks uvicorn to stop gracefully and cancels generation, then calls
    ``os._exit(0)`` after ``grace`` seconds whatever state the process is in: with the
    parent gone nobody will ever stop it otherwise.
    """

    def __init__(self, parent_pid: int, interval: float = 0.5, grace: float = 2.0):
        self.parent_pid = parent_pid
        self.interval = interval
        self.grace = grace
        self.direct = os.getppid() == parent_pid
        self.server: Any = None
        self.engine: Any = None
        self.stopped = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="parent-watchdog", daemon=True)

    @classmethod
    def from_env(cls) -> ParentWatchdog | None:
        """A watchdog for ``$MODELFLEET_PARENT_PID``, or None when it is unset or invalid."""
        value = os.environ.get(PARENT_ENV, "").strip()
        if not value.isdigit() or int(value) <= 1:
            if value:
                log.warning("ignoring %s=%r: not a parent pid", PARENT_ENV, value)
            return None
        return cls(int(value))

    def start(self) -> None:
        self._thread.start()

    def parent_alive(self) -> bool:
        if self.direct:
            return os.getppid() == self.parent_pid
        try:
            os.kill(self.parent_pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:  # exists, owned by someone else
            return True
        return True

    def _watch(self) -> None:
        while self.parent_alive():
            time.sleep(self.interval)
        log.warning("parent process %d is gone; shutting down", self.parent_pid)
        if self.engine is not None:
            self.engine.cancel_all()
        if self.server is not None:
            self.server.should_exit = True
            self.stopped.wait(self.grace)
        sys.stdout.flush()
        os._exit(0)


class EngineServer(uvicorn.Server):
    """uvicorn's server with three changes for an inference engine:

    - ``on_ready`` runs once the socket is bound (the "ready" line);
    - on shutdown, in-flight requests get most of the graceful window, then
      ``on_stop`` aborts their generation, so streams end properly (finish reason
      ``abort``, then ``[DONE]``) instead of being cut by uvicorn's task cancellation;
    - the stop signal is not re-raised after a graceful shutdown (uvicorn does, which
      kills the process before the engine's own cleanup and exits with -15); a graceful
      stop exits 0.
    """

    def __init__(
        self, config: uvicorn.Config, on_ready: Callable[[], None], on_stop: Callable[[], Any]
    ):
        super().__init__(config)
        self._on_ready = on_ready
        self._on_stop = on_stop

    async def startup(self, sockets: Any = None) -> None:
        await super().startup(sockets)
        if self.started:
            self._on_ready()

    async def shutdown(self, sockets: Any = None) -> None:
        grace = self.config.timeout_graceful_shutdown or 0
        timer = asyncio.get_running_loop().call_later(max(0.0, grace - 0.5), self._on_stop)
        try:
            await super().shutdown(sockets)
        finally:
            timer.cancel()

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        handled = (signal.SIGINT, signal.SIGTERM)
        previous = {sig: signal.signal(sig, self.handle_exit) for sig in handled}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def _pick(preferred: str, module: str) -> str:
    """uvicorn's fast loop/parser when installed, else its portable default."""
    return preferred if importlib.util.find_spec(module) is not None else "auto"


def load_context(args: EngineArgs) -> ServingContext:
    """Resolve task, device and dtype, load the model, and return the ServingContext."""
    # Heavy imports (torch, transformers) happen here, after the watchdog is running.
    import transformers

    from modelfleet.engines.builtin.context import ServingContext
    from modelfleet.engines.builtin.embedder import CrossScorer, Embedder
    from modelfleet.engines.builtin.generator import TextGenerator
    from modelfleet.engines.builtin.runtime import Engine

    # Weight-loading progress bars and warnings would flood the gateway's captured log.
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    task = detect_task(args.model) if args.task == "auto" else args.task
    device = resolve_device(args.device)
    dtype = resolve_dtype(args.dtype, device, args.model)
    threads = configure_torch_threads(args.max_concurrency) if device == "cpu" else None
    log.info(
        "loading model %s (task=%s, device=%s, dtype=%s, threads=%s)",
        args.model,
        task,
        device,
        str(dtype).removeprefix("torch."),
        threads,
    )
    started = time.monotonic()
    engine = Engine(args.max_concurrency)
    if task == "chat":
        ctx = ServingContext(
            args,
            "chat",
            engine,
            generator=TextGenerator.load(args.model, device, dtype, args.max_model_len),
        )
    elif task == "embed":
        ctx = ServingContext(args, "embed", engine, pooler=Embedder.load(args.model, device, dtype))
    else:
        ctx = ServingContext(
            args, "rerank", engine, pooler=CrossScorer.load(args.model, device, dtype)
        )
    log.info(
        "model loaded in %.1f s (max_model_len=%d)", time.monotonic() - started, ctx.max_model_len
    )
    return ctx


def run(args: EngineArgs) -> int:
    """Serve until SIGTERM/SIGINT (graceful, 2 s) or the parent's death; the exit code."""
    configure_logging()
    log.info(
        "starting engine pid %d for %s on %s:%d", os.getpid(), args.model, args.host, args.port
    )
    watchdog = ParentWatchdog.from_env()
    if watchdog is not None:
        watchdog.start()
    try:
        ctx = load_context(args)
    except Exception:
        log.exception("cannot load model %s", args.model)
        return 1
    from modelfleet.engines.builtin.app import build_app

    def ready() -> None:
        log.info(
            "ready: serving %r (%s) on http://%s:%d", ctx.model_name, ctx.task, args.host, args.port
        )

    config = uvicorn.Config(
        build_app(ctx),
        host=args.host,
        port=args.port,
        loop=_pick("uvloop", "uvloop"),
        http=_pick("httptools", "httptools"),
        access_log=False,
        log_level="warning",
        timeout_graceful_shutdown=2,
        lifespan="on",
    )
    server = EngineServer(config, on_ready=ready, on_stop=ctx.engine.cancel_all)
    if watchdog is not None:
        watchdog.server, watchdog.engine = server, ctx.engine
    try:
        server.run()
    finally:
        idle = ctx.engine.shutdown(wait_s=2.0)
        log.info("stopped")
        if watchdog is not None:
            watchdog.stopped.set()
        if not idle:
            # A worker is stuck in a long step; exit anyway rather than hang on join.
            sys.stdout.flush()
            os._exit(0)
    return 0
