"""One managed model: its lifecycle state machine and its running instances.

States::

    stopped ──ensure_ready/start──▶ starting ──ready──▶ ready
       ▲                              │                   │
       │                            fails               stop / idle / crash
       │                              ▼                   ▼
       └────────── stopping ◀──────  failed ◀────────── (crash)

``ensure_ready()`` is the only door for requests and callers never check the
state first: ready → return at once; stopped or failed → start (one start,
however many callers: they all await the same task); starting → wait for that
start; stopping → wait for the stop, then start. A failed start raises
``ModelStartError`` to every waiter. After consecutive failures the next start
waits out a backoff (0 s after the first failure, then 1, 2, 4 … 60 s); a
request inside the backoff gets 503 with Retry-After.

``lease()`` pairs ensure_ready with picking an instance and counting the
request in flight, with no await in between, so an idle stop can never take
an engine from under a request.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Collection, Coroutine
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp

from modelfleet.engines.base import EngineAdapter
from modelfleet.errors import FleetError, ModelStartError, UnavailableError
from modelfleet.fleet.endpoints import layout_of, parse_address, unix_session
from modelfleet.fleet.logs import ModelLog
from modelfleet.fleet.placement import Placement, Reservation
from modelfleet.fleet.routing import NO_HINT, Breaker, Policy, RouteHint, choose, make_policy
from modelfleet.fleet.supervisor import EngineProcess, free_port
from modelfleet.settings import Endpoint, ModelConfig, engine_environment

if TYPE_CHECKING:
    from modelfleet.fleet.coordinator import Coordinator

MAX_BACKOFF_S = 60.0


class ModelState(StrEnum):
    STOPPED = "stopped"
    STARTING = "starting"
    READY = "ready"
    STOPPING = "stopping"
    FAILED = "failed"


@dataclass(eq=False)
class Instance:
    """A running engine endpoint of a model."""

    base_url: str
    process: EngineProcess | None = None
    reservation: Reservation | None = None
    role: str = "pd"
    outstanding: int = 0
    served: int = 0
    started_at: float = field(default_factory=time.time)
    # Periodic health checks: consecutive failures, and the last verdict (None: unchecked).
    health_failures: int = 0
    healthy: bool | None = None
    breaker: Breaker = field(default_factory=Breaker)
    # Where it runs when another process launched it (an agent, another gateway):
    # that node's id and the instance's metastore record id. Empty for our own engines.
    node: str = ""
    record_id: str = ""
    fence: int = 0  # the start lock's token when this instance was launched under it
    # How the instance is shown (its URL, or ipc:///path for a Unix socket; empty: its
    # base_url), and the session that reaches a Unix socket (None: the model's session).
    address: str = ""
    session: aiohttp.ClientSession | None = None

    def __post_init__(self) -> None:
        self.address = self.address or self.base_url

    @property
    def remote(self) -> bool:
        """Launched by another node: we route to it but neither watch nor stop it."""
        return bool(self.record_id) and self.process is None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None


class ManagedModel:
    def __init__(
        self,
        cfg: ModelConfig,
        adapter: EngineAdapter,
        log_dir: Path,
        session: aiohttp.ClientSession,
        start_timeout: float,
        placement: Placement | None = None,
    ):
        self.cfg = cfg
        self.placement = placement
        self.adapter = adapter
        self.session = session
        self.start_timeout = cfg.startup_timeout or start_timeout
        self.log = ModelLog(log_dir / f"{_safe(cfg.name)}.log")
        self.state = ModelState.STOPPED
        self.failure_reason: str | None = None
        self.instances: list[Instance] = []
        self.in_flight = 0
        self.last_used = time.monotonic()
        self.start_count = 0
        self.failures = 0
        self.last_failure_at = 0.0
        self.ready_at: float | None = None
        self.config_source: str | None = None
        self.capabilities = adapter.capabilities(cfg)
        self.rewriter = adapter.response_rewriter()
        self._transition: asyncio.Task[None] | None = None
        self._defaults: dict[str, Any] = {}
        self._defaults_of: ModelConfig | None = None
        self._transition_kind = ""
        self._watchers: list[asyncio.Task[None]] = []
        self._replacing: set[asyncio.Task[None]] = set()
        self._policy = make_policy(cfg.routing)
        self._role_policies: dict[str, Policy] = {}  # disaggregated serving: one per role
        self._sockets: dict[str, aiohttp.ClientSession] = {}  # endpoints on Unix sockets
        # Set by the fleet: how starts are shared with other gateways and agents.
        self.coordinator: Coordinator | None = None
        self.bind_host = "127.0.0.1"  # engines listen here (an agent: its advertised host)

    @property
    def name(self) -> str:
        return self.cfg.name

    @property
    def request_defaults(self) -> dict[str, Any]:
        """The sampling parameters a request without them gets (``defaults``, and the
        older ``limits.default_temperature``); computed once per config."""
        if self._defaults_of is not self.cfg:
            values = self.cfg.defaults.model_dump(exclude_none=True)
            if "temperature" not in values and self.cfg.limits.default_temperature is not None:
                values["temperature"] = self.cfg.limits.default_temperature
            self._defaults, self._defaults_of = values, self.cfg
        return self._defaults

    @property
    def upstream_name(self) -> str:
        """What the engine calls this model; request bodies are rewritten to it."""
        return self.cfg.upstream_model or self.cfg.name

    # -- the door ---------------------------------------------------------

    async def ensure_ready(self) -> None:
        while self.state is not ModelState.READY:
            task = self._transition
            if task is not None:
                kind = self._transition_kind
                try:
                    await asyncio.shield(task)
                except FleetError:
                    if kind == "start":
                        raise
                continue
            wait = self._backoff_left()
            if wait > 0:
                raise ModelStartError(
                    f"model {self.name!r} failed to start: {self.failure_reason}; "
                    f"retrying in {wait:.0f}s",
                    retry_after=wait,
                )
            self._begin("start", self._start())

    async def start(self) -> None:
        """Explicit start (API, auto_start): the same door as a request."""
        if self.state is ModelState.FAILED:
            self.last_failure_at = 0.0  # an operator's start skips the backoff
        await self.ensure_ready()

    async def stop(self, grace: float = 10.0) -> None:
        """Stop every instance; waits for a start in progress to settle first."""
        while True:
            task = self._transition
            if task is None:
                break
            with contextlib.suppress(FleetError):
                await asyncio.shield(task)
        if self.state in (ModelState.STOPPED, ModelState.FAILED) and not self.instances:
            self.state = ModelState.STOPPED
        else:
            self._begin("stop", self._stop(grace))
            await asyncio.shield(self._transition)  # type: ignore[arg-type]
        sockets, self._sockets = list(self._sockets.values()), {}
        for session in sockets:
            await session.close()

    @contextlib.asynccontextmanager
    async def lease(self, exclude: Collection[Instance] = (),
                    hint: RouteHint = NO_HINT, role: str | None = None
                    ) -> AsyncIterator[Instance]:
        """Ready the model, pick an instance and hold it for one request.

        The model's routing policy picks (``fleet/routing.py``), reading
        ``hint``; instances with an open circuit are skipped. ``exclude`` names
        instances a retry must avoid; when every instance is excluded,
        UnavailableError says so. ``role`` picks among the instances of one role
        (disaggregated serving, each role with its own policy state); without it a
        disaggregated model offers the instances that can answer alone
        (``front_role``), never an encoder or a prefill.
        """
        await self.ensure_ready()
        if self._policy.name != self.cfg.routing:  # the config was changed at run time
            self._policy = make_policy(self.cfg.routing)
            self._role_policies.clear()
        if role is None and not self.disaggregated:
            instance = choose(self._policy, self.instances, exclude, hint)
        else:
            role = role or self.front_role
            pool = self.instances_of(role)
            if not pool:
                raise UnavailableError(f"model {self.name!r} has no {role} instance")
            policy = self._role_policies.get(role)
            if policy is None:
                policy = self._role_policies[role] = make_policy(self.cfg.routing)
            instance = choose(policy, pool, exclude, hint)
        if instance is None:
            raise UnavailableError(f"no other instance of {self.name!r} to try")
        instance.outstanding += 1
        self.in_flight += 1
        try:
            yield instance
        finally:
            instance.outstanding -= 1
            instance.served += 1
            instance.breaker.released()
            self.in_flight -= 1
            self.last_used = time.monotonic()

    @property
    def disaggregated(self) -> bool:
        """Whether requests go through roles (encode, prefill, decode), not one pd
        instance: the config says so, or instances that joined do."""
        cfg = self.cfg
        if cfg.roles is not None or cfg.endpoints:
            layout = layout_of(cfg.replicas, cfg.roles, (e.role for e in cfg.endpoints))
            if any(role != "pd" for role in layout):
                return True
        return any(i.role != "pd" for i in self.instances)

    @property
    def front_role(self) -> str:
        """The role that answers the client: pd where there is one, else decode."""
        return "pd" if any(i.role == "pd" for i in self.instances) else "decode"

    def instances_of(self, role: str) -> list[Instance]:
        return [i for i in self.instances if i.role == role]

    @staticmethod
    def report(instance: Instance, ok: bool) -> None:
        """An instance answered (``ok``) or failed in a way a retry would avoid
        (5xx, unreachable): its circuit breaker counts it."""
        instance.breaker.record(ok)

    def note_success(self) -> None:
        self.failures = 0

    # -- transitions --------------------------------------------------------

    def _begin(self, kind: str, coro: Coroutine[Any, Any, None]) -> None:
        self._transition_kind = kind
        task = asyncio.create_task(coro)
        self._transition = task
        task.add_done_callback(self._end_transition)

    def _end_transition(self, task: asyncio.Task[None]) -> None:
        if self._transition is task:
            self._transition = None
        if not task.cancelled():
            task.exception()  # mark retrieved; waiters got it through shield

    def _backoff_left(self) -> float:
        if self.state is not ModelState.FAILED or self.failures <= 1:
            return 0.0
        delay = min(2.0 ** (self.failures - 2), MAX_BACKOFF_S)
        return self.last_failure_at + delay - time.monotonic()

    async def _start(self) -> None:
        self.state = ModelState.STARTING
        self.failure_reason = None
        self.start_count += 1
        started = time.monotonic()
        self.log.append(f"[modelfleet] starting {self.name} ({self.cfg.engine})")
        try:
            if self.coordinator is not None:
                good = await self.coordinator.launch(self, self._launch_local)
            else:
                good = await self._launch_local()
        except BaseException as exc:
            self._fail(str(exc) if isinstance(exc, FleetError) else repr(exc))
            if isinstance(exc, FleetError):
                raise
            raise ModelStartError(f"model {self.name!r} failed to start: {exc!r}") from exc
        self.instances = good
        self._watchers = [
            asyncio.create_task(self._watch(inst)) for inst in good if inst.process
        ]
        self.state = ModelState.READY
        self.ready_at = time.time()
        self.last_used = time.monotonic()
        self.log.append(f"[modelfleet] {self.name} ready in {time.monotonic() - started:.1f}s")

    async def _launch_local(self) -> list[Instance]:
        """Launch (or reach) every instance here; all or none."""
        launched = await asyncio.gather(
            *(self._start_instance(role, endpoint) for role, endpoint in self._slots()),
            return_exceptions=True,
        )
        errors = [r for r in launched if isinstance(r, BaseException)]
        good = [r for r in launched if isinstance(r, Instance)]
        if errors:
            for inst in good:
                self._release(inst)
                if inst.process:
                    await inst.process.stop(grace=2)
            raise errors[0]
        return good

    def _slots(self) -> list[tuple[str, Endpoint | None]]:
        """The instances a start brings up: each endpoint (started by hand), else
        ``roles`` (or ``replicas`` pd instances) to launch."""
        if self.cfg.endpoints:
            return [(e.role, e) for e in self.cfg.endpoints]
        layout = layout_of(self.cfg.replicas, self.cfg.roles)
        return [(role, None) for role, count in layout.items() for _ in range(count)]

    async def _reach(self, endpoint: Endpoint) -> Instance:
        """An instance started by hand: probed for readiness, never launched."""
        address = parse_address(endpoint.address)
        session = None
        if address.uds is not None:
            session = self._sockets.get(address.uds)
            if session is None or session.closed:
                session = self._sockets[address.uds] = unix_session(address.uds, self.session)
        inst = Instance(base_url=address.base_url, role=endpoint.role,
                        address=address.display, session=session)
        await self.probe(inst.base_url + self.adapter.ready_path(self.cfg), session=session)
        self.config_source = "endpoints"
        return inst

    async def _start_instance(self, role: str = "pd", endpoint: Endpoint | None = None
                              ) -> Instance:
        if endpoint is not None:
            return await self._reach(endpoint)
        host = self.bind_host
        if not self.adapter.launched:
            inst = Instance(base_url=self.adapter.base_url(self.cfg, host, 0))
            await self.probe(inst.base_url + self.adapter.ready_path(self.cfg))
            self.config_source = "external"
            return inst
        if not self.adapter.installed():
            raise ModelStartError(f"engine {self.cfg.engine} is not installed on this host",
                                  code="ENGINE_NOT_INSTALLED")
        reservation = await self.placement.place(self) if self.placement else None
        try:
            profile = reservation.profile if reservation else None
            port = free_port(host)
            spec = self.adapter.launch(self.cfg, host, port, profile, role=role)
            process = EngineProcess(spec.argv, engine_environment(spec.env), self.log)
            await process.spawn()
            base_url = self.adapter.base_url(self.cfg, host, port)
            try:
                await process.wait_ready(base_url + self.adapter.ready_path(self.cfg),
                                         self.start_timeout, self.session)
            except BaseException:
                await process.stop(grace=2)
                raise
        except BaseException:
            if self.placement is not None:
                self.placement.release(reservation)
            raise
        if reservation is not None:
            reservation.placed = True
            self.config_source = reservation.source
        return Instance(base_url=base_url, process=process, reservation=reservation, role=role)

    @property
    def health(self) -> str:
        """healthy, unhealthy (failed, or an instance failing its checks) or unknown."""
        if self.state is ModelState.FAILED:
            return "unhealthy"
        if self.state is not ModelState.READY:
            return "unknown"
        return "unhealthy" if any(i.healthy is False for i in self.instances) else "healthy"

    async def probe(self, url: str, timeout: float = 10,
                    session: aiohttp.ClientSession | None = None) -> None:
        """GET ``url`` on an engine (through ``session``, an instance's own, when given);
        ModelStartError unless it answers below 400."""
        headers = {"Authorization": f"Bearer {self.cfg.api_key}"} if self.cfg.api_key else None
        try:
            async with (session or self.session).get(
                    url, timeout=aiohttp.ClientTimeout(total=timeout), headers=headers) as r:
                if r.status >= 400:
                    raise ModelStartError(f"{url} answered {r.status}")
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise ModelStartError(f"{url} is unreachable: {exc!r}") from exc

    async def _watch(self, inst: Instance) -> None:
        """Notice an engine that exits on its own.

        With other instances still serving, the model stays ready and a
        replacement starts in the background; the last one gone makes the
        model failed at once (no await before that), so no new request is
        handed a dead engine.
        """
        assert inst.process is not None
        code = await inst.process.wait()
        if self.state is ModelState.STOPPING or inst not in self.instances:
            return
        last = [line.message for line in self.log.tail(3)]
        self.log.append(f"[modelfleet] engine pid {inst.pid} exited unexpectedly (code {code})")
        self._release(inst)
        if self.state is ModelState.READY and len(self.instances) > 1:
            self.instances.remove(inst)
            self.log.append(f"[modelfleet] {len(self.instances)} instance(s) left; replacing it")
            task = asyncio.create_task(self._replace(inst.role))
            self._replacing.add(task)
            task.add_done_callback(self._replacing.discard)
            return
        survivors = [i for i in self.instances if i is not inst]
        watchers, self._watchers = self._watchers, []
        self._fail(f"engine exited with code {code}" + (f": {last[-1]}" if last else ""))
        for w in watchers:
            if w is not asyncio.current_task():
                w.cancel()
        for i in survivors:
            self._release(i)
        await asyncio.gather(
            *(i.process.stop(grace=2) for i in survivors if i.process), return_exceptions=True
        )

    async def _replace(self, role: str = "pd") -> None:
        """Launch an instance in place of one that died; it keeps that one's role."""
        try:
            inst = await self._start_instance(role)
        except FleetError as exc:
            self.log.append(f"[modelfleet] replacement failed: {exc.message}")
            return
        if self.state is not ModelState.READY:  # stopped meanwhile: not wanted any more
            self._release(inst)
            if inst.process:
                await inst.process.stop(grace=2)
            return
        self.instances.append(inst)
        self._watchers.append(asyncio.create_task(self._watch(inst)))
        self.log.append(f"[modelfleet] replacement instance ready at {inst.base_url}")

    def _fail(self, reason: str) -> None:
        self.state = ModelState.FAILED
        self.failure_reason = reason
        self.failures += 1
        self.last_failure_at = time.monotonic()
        self.instances = []
        self.ready_at = None
        self.log.append(f"[modelfleet] {self.name} failed: {reason}")

    async def _stop(self, grace: float) -> None:
        self.state = ModelState.STOPPING
        self.log.append(f"[modelfleet] stopping {self.name}")
        await self._stop_all(grace)
        self.state = ModelState.STOPPED
        self.ready_at = None
        self.log.append(f"[modelfleet] {self.name} stopped")

    async def _stop_all(self, grace: float) -> None:
        instances, self.instances = self.instances, []
        current = asyncio.current_task()
        for w in [*self._watchers, *self._replacing]:
            if w is not current:
                w.cancel()
        self._watchers = []
        for inst in instances:
            self._release(inst)
        await asyncio.gather(
            *(inst.process.stop(grace) for inst in instances if inst.process),
            return_exceptions=True,
        )
        if self.coordinator is not None:
            await self.coordinator.stopped(self, instances)

    def left(self, reason: str) -> None:
        """Every instance (all run elsewhere) left the fleet: stopped, so the next
        request starts the model again."""
        if self.state is ModelState.READY and not self.instances:
            self.state = ModelState.STOPPED
            self.ready_at = None
            self.log.append(f"[modelfleet] {self.name} stopped: {reason}")

    def is_idle(self) -> bool:
        """Ready, nothing in flight and no transition under way: safe to stop for room."""
        return self.state is ModelState.READY and self.in_flight == 0 and self._transition is None

    def held_devices(self) -> set[str]:
        return {d for i in self.instances if i.reservation for d in i.reservation.memory}

    def _release(self, inst: Instance) -> None:
        if self.placement is not None:
            self.placement.release(inst.reservation)
        inst.reservation = None

    def idle_seconds(self) -> float:
        return 0.0 if self.in_flight else time.monotonic() - self.last_used

    def close(self) -> None:
        self.log.close()


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
