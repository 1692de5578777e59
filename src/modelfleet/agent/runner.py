"""The agent: the gateway's supervisor on another host, without the public API.

``modelfleet agent --redis-url URL --advertise-host H`` registers this host
(node record: devices, control URL) and keeps in step with the assignments
gateways write for it: an assignment names a model, its config, the roles
to run here and the fencing token of the start that made it. Each assigned
model runs in a local ``Fleet`` whose engines bind the advertised host; every
ready instance is registered under its own key with a TTL renewed each third
of it, so a dead agent's instances leave routing on their own. A failed start
is published as ``instance_failed`` so the gateway fails fast. An assignment
that goes away stops its engines; the agent stops every engine when it stops
(and engines die with it if it is killed: ``PR_SET_PDEATHSIG``).

Models in the agent's own config (``--config``) run from the start, with
fence 0, for gateways that discover them (``discover: true``, seed 000's
metastore mode).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

import aiohttp

from modelfleet import __version__
from modelfleet.fleet.endpoints import layout_of
from modelfleet.fleet.model import Instance, ManagedModel, ModelState
from modelfleet.fleet.registry import Fleet
from modelfleet.metastore import (
    Assignment,
    DeviceInfo,
    Event,
    InstanceRecord,
    Metastore,
    MetastoreUnavailableError,
    NodeRecord,
)
from modelfleet.settings import ModelConfig, Settings

log = logging.getLogger("modelfleet.agent")


class Running:
    """A model this agent runs: its managed model and the assignment behind it."""

    def __init__(self, model: ManagedModel, fence: int, roles: dict[str, int]):
        self.model = model
        self.fence = fence
        self.roles = roles
        self.task: asyncio.Task[None] | None = None


class Agent:
    def __init__(self, settings: Settings, metastore: Metastore, session: aiohttp.ClientSession,
                 *, node_id: str, host: str, control_url: str | None = None):
        self.settings = settings
        self.metastore = metastore
        self.node_id = node_id
        self.host = host
        self.control_url = control_url
        self.ttl_s = settings.fleet.ttl_s
        self.fleet = Fleet(settings, session, models=[])
        self.running: dict[str, Running] = {}
        self.started_at = time.time()
        self._wake = asyncio.Event()
        self._registered: set[str] = set()

    # -- lifetime ---------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Serve assignments until ``stop`` is set, then stop every engine."""
        await self.metastore.start()
        own = [self._own(cfg) for cfg in self.settings.models]
        loops = [asyncio.create_task(self._heartbeat_loop()),
                 asyncio.create_task(self._reconcile_loop()),
                 asyncio.create_task(self._event_loop())]
        log.info("agent %s on %s: %d model(s) of its own", self.node_id, self.host, len(own))
        try:
            await stop.wait()
        finally:
            for task in loops:
                task.cancel()
            await asyncio.gather(*loops, return_exceptions=True)
            await self.shutdown()

    async def shutdown(self) -> None:
        names = list(self.running)
        await asyncio.gather(*(self._stop_model(n) for n in names), return_exceptions=True)
        with contextlib.suppress(MetastoreUnavailableError, TimeoutError):
            async with asyncio.timeout(2):
                await self.metastore.remove_node(self.node_id)
                await self.metastore.publish(Event(kind="node_down", source=self.node_id,
                                                   at=time.time()))
        await self.fleet.close()
        await self.metastore.close()

    # -- assignments ------------------------------------------------------------

    def _own(self, cfg: ModelConfig) -> Running:
        cfg = cfg.model_copy(update={"idle_timeout": 0, "nodes": [], "discover": False})
        return self._launch(cfg, fence=0, roles=layout_of(cfg.replicas, cfg.roles))

    def _launch(self, cfg: ModelConfig, fence: int, roles: dict[str, int]) -> Running:
        if cfg.name in self.fleet.models:
            self.fleet.update(cfg)
            model = self.fleet.models[cfg.name]
        else:
            model = self.fleet.add(cfg)
        model.bind_host = self.host
        run = Running(model, fence, roles)
        self.running[cfg.name] = run
        run.task = asyncio.create_task(self._start(run))
        return run

    async def _start(self, run: Running) -> None:
        model = run.model
        try:
            await model.start()
        except Exception as exc:  # noqa: BLE001 - reported to the gateways, then logged
            reason = getattr(exc, "message", None) or repr(exc)
            log.warning("%s failed to start here: %s", model.name, reason)
            with contextlib.suppress(MetastoreUnavailableError):
                await self.metastore.publish(Event(
                    kind="instance_failed", source=self.node_id, at=time.time(),
                    data={"model": model.name, "node": self.node_id, "reason": reason}))
            return
        with contextlib.suppress(MetastoreUnavailableError):
            await self._register(run)
            await self.metastore.publish(Event(kind="instance_up", source=self.node_id,
                                               at=time.time(), data={"model": model.name}))

    async def reconcile(self) -> None:
        """Run what is assigned here, stop what is not (own models always run)."""
        wanted: dict[str, Assignment] = await self.metastore.assignments(self.node_id)
        own = {cfg.name for cfg in self.settings.models}
        for name, assignment in wanted.items():
            run = self.running.get(name)
            if run is not None and run.fence == assignment.fence and run.roles == assignment.roles:
                if run.model.state is ModelState.FAILED and run.task and run.task.done():
                    continue  # reported; the gateway takes the assignment back
                continue
            if run is not None:
                await self._stop_model(name)
            try:
                cfg = ModelConfig.model_validate(assignment.config)
            except ValueError as exc:
                log.warning("assignment of %s refused: %s", name, exc)
                continue
            # A node's share of the roles need not be a whole layout: no re-validation.
            cfg = cfg.model_copy(update={"roles": dict(assignment.roles), "nodes": [],
                                         "discover": False, "idle_timeout": 0,
                                         "auto_start": False})
            self._launch(cfg, assignment.fence, dict(assignment.roles))
        for name in list(self.running):
            if name not in wanted and name not in own:
                await self._stop_model(name)

    async def _stop_model(self, name: str) -> None:
        run = self.running.pop(name, None)
        if run is None:
            return
        if run.task and not run.task.done():
            run.task.cancel()
        instances = list(run.model.instances)
        with contextlib.suppress(Exception):
            await self.fleet.remove(name)
        for inst in instances:
            if inst.record_id:
                self._registered.discard(inst.record_id)
                with contextlib.suppress(MetastoreUnavailableError):
                    await self.metastore.remove_instance(inst.record_id)
        with contextlib.suppress(MetastoreUnavailableError):
            await self.metastore.publish(Event(kind="instance_down", source=self.node_id,
                                               at=time.time(), data={"model": name}))

    # -- records -----------------------------------------------------------------

    def _node_record(self) -> NodeRecord:
        devices = [DeviceInfo(id=d.id, name=d.name, memory_mb=d.total_mb, free_mb=d.free_mb)
                   for d in self.fleet.placement.inventory.devices()][:64]
        return NodeRecord(id=self.node_id, kind="agent", host=self.host,
                          control_url=self.control_url, devices=devices,
                          capacity={"models": float(self.settings.max_concurrent_models),
                                    "running": float(len(self.running))},
                          started_at=self.started_at, heartbeat_at=time.time(),
                          version=__version__)

    def _record(self, run: Running, inst: Instance) -> InstanceRecord:
        if not inst.record_id:
            port = inst.base_url.rsplit(":", 1)[-1]
            inst.record_id = f"{self.node_id}/{run.model.name}/{inst.role}/{port}"[:200]
            inst.node = self.node_id
        return InstanceRecord(
            id=inst.record_id, model=run.model.name, role=inst.role,
            address=inst.base_url, engine=run.model.cfg.engine, state="ready",
            node=self.node_id, load=inst.outstanding, pid=inst.pid, fence=run.fence,
            started_at=inst.started_at, updated_at=time.time())

    async def _register(self, run: Running) -> None:
        current = set()
        for inst in list(run.model.instances):
            rec = self._record(run, inst)
            await self.metastore.put_instance(rec, self.ttl_s)
            current.add(rec.id)
        prefix = f"{self.node_id}/{run.model.name}/"
        for stale in [r for r in self._registered if r.startswith(prefix) and r not in current]:
            await self.metastore.remove_instance(stale)  # an engine replaced after a crash
            self._registered.discard(stale)
        self._registered |= current

    async def heartbeat(self) -> None:
        await self.metastore.put_node(self._node_record(), self.ttl_s)
        for run in list(self.running.values()):
            if run.model.state is ModelState.READY:
                await self._register(run)

    # -- loops -------------------------------------------------------------------

    async def _heartbeat_loop(self) -> None:
        while True:
            try:
                await self.heartbeat()
            except MetastoreUnavailableError:
                pass
            except Exception:
                log.exception("agent heartbeat failed")
            await asyncio.sleep(self.ttl_s / 3)

    async def _reconcile_loop(self) -> None:
        while True:
            try:
                await self.reconcile()
            except MetastoreUnavailableError:
                pass
            except Exception:
                log.exception("reconciling assignments failed")
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), 1.0)

    async def _event_loop(self) -> None:
        while True:
            try:
                async for event in self.metastore.subscribe():
                    if event.kind in ("assignment", "resync"):
                        self._wake.set()
                return
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("agent events failed; resubscribing")
                await asyncio.sleep(1)
