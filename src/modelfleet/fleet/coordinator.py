"""Sharing the fleet with other gateways and agents through the metastore.

One ``Coordinator`` per gateway. It keeps this gateway's view of the fleet
(every live instance record, refreshed every third of the TTL and on events),
registers this gateway's own engines with a TTL renewed by heartbeat, and
decides how a model starts (``launch``):

* ``nodes: [...]`` — on agents: under the model's start lock, the gateway
  writes an assignment (fenced by the lock's token) to each live node and
  waits for the agents' instance records;
* ``discover: true`` — instances someone else registered (agents, engines
  started by hand): the gateway waits for them, up to one TTL;
* otherwise, with a shared (Redis) metastore — single flight across
  replicas: a replica adopts the instances another one already runs; else
  the one that takes the start lock launches, registers its engines, and
  releases the lock, which wakes the replicas waiting on it;
* with the in-process metastore, a plain local launch.

Adopted instances (``Instance.remote``) are routed to but never watched or
stopped here: when their records leave the view (a stop elsewhere, or a TTL
running out after a crash) they leave routing, and a model left with none is
stopped. A metastore outage changes nothing that is already known: the view
is kept (and saved to ``data_dir/fleet_view.json`` for the next start), local
launches go on, and only records seen gone in a successful read are dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import orjson

from modelfleet.errors import ModelStartError
from modelfleet.fleet.endpoints import layout_of
from modelfleet.metastore import (
    Assignment,
    Event,
    InstanceRecord,
    Metastore,
    MetastoreUnavailableError,
    NodeRecord,
)

if TYPE_CHECKING:
    from modelfleet.fleet.model import Instance, ManagedModel

log = logging.getLogger("modelfleet.fleet.coordinator")

LocalLaunch = Callable[[], Awaitable[list["Instance"]]]
VIEW_FILE = "fleet_view.json"


def default_node_id(port: int) -> str:
    """``host-port``: unique per gateway on a host, stable across restarts."""
    host = "".join(c if c.isalnum() or c in ".-" else "-" for c in socket.gethostname())
    suffix = str(port) if port else os.urandom(4).hex()  # port 0: the OS picks; be unique
    return f"{host[:48] or 'node'}-{suffix}"


def spread(roles: Mapping[str, int], nodes: list[str]) -> dict[str, dict[str, int]]:
    """Deal each role's instances over ``nodes`` in turn, so roles and load both spread.

    ``{encode: 1, prefill: 1, decode: 1}`` over ``[a, b]`` → a: encode, decode;
    b: prefill.
    """
    plan: dict[str, dict[str, int]] = {}
    turn = 0
    for role, count in roles.items():
        for _ in range(count):
            node = nodes[turn % len(nodes)]
            plan.setdefault(node, {})
            plan[node][role] = plan[node].get(role, 0) + 1
            turn += 1
    return plan


def address_url(address: str) -> str:
    """An instance record's address as the base URL the relay uses."""
    if address.startswith(("http://", "https://", "unix:")):
        return address.rstrip("/")
    return "http://" + address


class Coordinator:
    def __init__(self, metastore: Metastore, node_id: str, *, ttl_s: float, data_dir: Path,
                 host: str = "127.0.0.1", kind: str = "gateway", version: str = ""):
        self.metastore = metastore
        self.node_id = node_id
        self.ttl_s = ttl_s
        self.host = host
        self.kind = kind
        self.version = version
        self.view_path = data_dir / VIEW_FILE
        self.records: dict[str, InstanceRecord] = {}
        self.nodes: dict[str, NodeRecord] = {}
        self.models: Mapping[str, ManagedModel] = {}
        self.used: dict[str, float] = {}  # model → wall time this gateway last served it
        # Aborts another gateway broadcast: called with their request ids.
        self.on_abort: Callable[[list[str]], Awaitable[object]] | None = None
        self.failures: dict[str, str] = {}  # model → the last start failure an agent reported
        self.started_at = time.time()
        self._changed = asyncio.Condition()
        self._tasks: list[asyncio.Task[None]] = []
        self._refreshed_at = 0.0
        self._reachable_since: float | None = None  # None: unreachable at the last read
        # Set when the gateway shuts down: its models stop here, but models on agents keep
        # running for the other gateways (and for this one when it comes back).
        self.closing = False
        self._saved: bytes = b""

    @property
    def shared(self) -> bool:
        """Other gateways may see this metastore (Redis), so starts must be coordinated."""
        return self.metastore.name != "memory"

    # -- lifetime -------------------------------------------------------------

    async def start(self, models: Mapping[str, ManagedModel]) -> None:
        """Load the last view, connect (never failing on an outage) and start the loops."""
        self.models = models
        self._load_view()
        await self.metastore.start()
        with contextlib.suppress(MetastoreUnavailableError):
            await self.refresh()
        self._tasks = [asyncio.create_task(self._heartbeat_loop()),
                       asyncio.create_task(self._refresh_loop()),
                       asyncio.create_task(self._event_loop())]

    async def close(self) -> None:
        """Stop the loops and take this gateway's records out (best effort, bounded)."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        with contextlib.suppress(MetastoreUnavailableError, TimeoutError):
            async with asyncio.timeout(2):
                for model in self.models.values():
                    for inst in model.instances:
                        if inst.record_id and not inst.remote:
                            await self.metastore.remove_instance(inst.record_id)
                await self.metastore.remove_node(self.node_id)
        await self.metastore.close()

    # -- the view ---------------------------------------------------------------

    def ready_records(self, model: ManagedModel, *, others: bool = True) -> list[InstanceRecord]:
        """Live, ready instance records of ``model`` (by name, alias or served name)."""
        names = {model.name, *model.cfg.aliases, model.upstream_name}
        return [r for r in self.records.values()
                if r.model in names and r.state == "ready"
                and (not others or r.node != self.node_id)]

    async def refresh(self) -> None:
        """Read every instance and node record; bring models' remote instances in step.

        A record missing from a read is believed gone only once the metastore has
        been reachable for a whole TTL: after an outage (or a pause, during which
        records may expire unrenewed) every live owner re-registers within a third
        of the TTL, and until then the last view stands.
        """
        try:
            records = await self.metastore.instances()
            nodes = await self.metastore.nodes()
        except MetastoreUnavailableError:
            self._reachable_since = None
            raise
        now = time.monotonic()
        if self._reachable_since is None:
            self._reachable_since = now
        trusted = now - self._reachable_since >= self.ttl_s
        fresh = {r.id: r for r in records}
        fresh_nodes = {n.id: n for n in nodes}
        if not trusted:
            fresh = {**self.records, **fresh}
            fresh_nodes = {**self.nodes, **fresh_nodes}
        self.records = fresh
        self.nodes = fresh_nodes
        self._refreshed_at = now
        self._sync_models()
        self._save_view()
        async with self._changed:
            self._changed.notify_all()

    def _sync_models(self) -> None:
        from modelfleet.fleet.model import ModelState  # model imports this module

        for model in list(self.models.values()):
            if model.state is not ModelState.READY:
                continue
            remote = [i for i in model.instances if i.remote]
            if not remote and not (model.cfg.nodes or model.cfg.discover):
                continue
            records = {r.id: r for r in self.ready_records(model)}
            gone = [i for i in remote if i.record_id not in records]
            known = {i.record_id for i in remote}
            for inst in gone:
                model.instances.remove(inst)
                model.log.append(f"[modelfleet] {inst.base_url} ({inst.role}) on "
                                 f"{inst.node} left the fleet")
            for rec in records.values():
                if rec.id not in known:
                    model.instances.append(self.adopt(rec))
                    model.log.append(f"[modelfleet] {rec.address} ({rec.role}) on "
                                     f"{rec.node} joined")
            if not model.instances:
                model.left("every instance left the fleet")

    def adopt(self, rec: InstanceRecord) -> Instance:
        from modelfleet.fleet.model import Instance

        return Instance(base_url=address_url(rec.address), role=rec.role, node=rec.node,
                        record_id=rec.id)

    def _save_view(self) -> None:
        data = orjson.dumps([r.model_dump(mode="json") for r in self.records.values()])
        if data == self._saved:
            return
        self._saved = data
        tmp = self.view_path.with_suffix(".tmp")
        try:
            self.view_path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_bytes(data)
            os.replace(tmp, self.view_path)
        except OSError as exc:
            log.warning("could not save the fleet view: %s", exc)

    def _load_view(self) -> None:
        """The last view this gateway saw: what it routes to if the metastore is down."""
        try:
            items = orjson.loads(self.view_path.read_bytes())
        except (OSError, orjson.JSONDecodeError):
            return
        for item in items if isinstance(items, list) else []:
            try:
                rec = InstanceRecord.model_validate(item)
            except ValueError:
                continue
            if rec.node != self.node_id:  # our own engines died with the last run
                self.records[rec.id] = rec

    async def _wait_change(self, timeout: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with self._changed:
                await asyncio.wait_for(self._changed.wait(), timeout)

    # -- starting and stopping models -------------------------------------------

    async def launch(self, model: ManagedModel, local: LocalLaunch) -> list[Instance]:
        """The instances ``model`` starts with (see the module docstring for how)."""
        if model.cfg.nodes:
            return await self._launch_on_agents(model)
        if model.cfg.discover:
            return await self._discovered(model)
        if not self.shared:
            return await local()
        return await self._launch_once(model, local)

    async def _discovered(self, model: ManagedModel) -> list[Instance]:
        deadline = time.monotonic() + self.ttl_s
        while True:
            with contextlib.suppress(MetastoreUnavailableError):
                await self.refresh()
            records = self.ready_records(model)
            if records:
                return [self.adopt(r) for r in records]
            left = deadline - time.monotonic()
            if left <= 0:
                raise ModelStartError(f"no instance of {model.name!r} is registered in the "
                                      f"metastore", code="NO_INSTANCES")
            await self._wait_change(min(1.0, left))

    async def _launch_once(self, model: ManagedModel, local: LocalLaunch) -> list[Instance]:
        """Single flight across replicas: adopt, or launch under the start lock."""
        lock = f"start:{model.name}"
        deadline = time.monotonic() + model.start_timeout + self.ttl_s
        while True:
            records = self.ready_records(model)
            if records:
                model.log.append(f"[modelfleet] using {len(records)} instance(s) another "
                                 f"gateway started")
                return [self.adopt(r) for r in records]
            try:
                token = await self.metastore.acquire(lock, self.ttl_s)
            except MetastoreUnavailableError:
                log.warning("metastore unavailable: starting %s here without the lock",
                            model.name)
                return await local()
            if token is not None:
                return await self._launch_holding(model, local, lock, token)
            if time.monotonic() > deadline:
                raise ModelStartError(f"timed out waiting for another gateway to start "
                                      f"{model.name!r}")
            await self._wait_change(0.5)
            with contextlib.suppress(MetastoreUnavailableError):
                await self.refresh()

    async def _launch_holding(self, model: ManagedModel, local: LocalLaunch, lock: str,
                              token: int) -> list[Instance]:
        keeper = asyncio.create_task(self._keep_lock(lock, token))
        try:
            with contextlib.suppress(MetastoreUnavailableError):
                await self.refresh()
            records = self.ready_records(model)
            if records:
                return [self.adopt(r) for r in records]
            instances = await local()
            for inst in instances:
                self._name_record(model, inst)
            await self._register(model, instances, fence=token)
            return instances
        finally:
            keeper.cancel()
            with contextlib.suppress(MetastoreUnavailableError):
                await self.metastore.release(lock, token)

    async def _keep_lock(self, lock: str, token: int) -> None:
        while True:
            await asyncio.sleep(self.ttl_s / 3)
            with contextlib.suppress(MetastoreUnavailableError):
                if not await self.metastore.renew(lock, token, self.ttl_s):
                    log.warning("lost the lock %s while holding it", lock)
                    return

    async def _launch_on_agents(self, model: ManagedModel) -> list[Instance]:
        lock = f"start:{model.name}"
        deadline = time.monotonic() + model.start_timeout + self.ttl_s
        while True:
            with contextlib.suppress(MetastoreUnavailableError):
                await self.refresh()
            records = self.ready_records(model)
            if records:
                return [self.adopt(r) for r in records]
            try:
                token = await self.metastore.acquire(lock, self.ttl_s)
            except MetastoreUnavailableError as exc:
                raise ModelStartError(f"{model.name!r} runs on agents and the metastore is "
                                      f"unavailable: {exc.message}") from exc
            if token is not None:
                break
            if time.monotonic() > deadline:
                raise ModelStartError(f"timed out waiting for another gateway to start "
                                      f"{model.name!r}")
            await self._wait_change(0.5)
        keeper = asyncio.create_task(self._keep_lock(lock, token))
        try:
            return await self._assign(model, lock, token, deadline)
        finally:
            keeper.cancel()
            with contextlib.suppress(MetastoreUnavailableError):
                await self.metastore.release(lock, token)

    async def _assign(self, model: ManagedModel, lock: str, token: int,
                      deadline: float) -> list[Instance]:
        alive = [n for n in model.cfg.nodes if n in self.nodes]
        if not alive:
            raise ModelStartError(f"none of the nodes {model.cfg.nodes} of {model.name!r} is "
                                  f"alive", code="NO_NODES")
        roles = layout_of(model.cfg.replicas, model.cfg.roles)
        plan = spread(roles, alive)
        config = model.cfg.model_dump(mode="json")
        self.failures.pop(model.name, None)
        for node, counts in plan.items():
            assignment = Assignment(model=model.name, config=config, roles=counts, fence=token,
                                    gateway=self.node_id, at=time.time())
            if not await self.metastore.put_assignment(node, assignment, lock):
                raise ModelStartError(f"lost the start lock of {model.name!r}")
        await self.metastore.publish(Event(kind="assignment", source=self.node_id,
                                           at=time.time(),
                                           data={"model": model.name, "nodes": list(plan)}))
        model.log.append(f"[modelfleet] assigned {model.name} to "
                         + ", ".join(f"{n} {c}" for n, c in plan.items()))
        expected = sum(roles.values())
        while True:
            with contextlib.suppress(MetastoreUnavailableError):
                await self.refresh()
            mine = [r for r in self.ready_records(model) if r.fence == token]
            if len(mine) >= expected:
                return [self.adopt(r) for r in mine]
            reason = self.failures.get(model.name)
            if reason or time.monotonic() > deadline:
                await self._unassign(model, plan)
                raise ModelStartError(f"{model.name!r} failed to start on its agents: "
                                      f"{reason or 'timed out'}")
            await self._wait_change(0.5)

    async def _unassign(self, model: ManagedModel, nodes: Iterable[str]) -> None:
        for node in nodes:
            with contextlib.suppress(MetastoreUnavailableError):
                await self.metastore.remove_assignment(node, model.name)
        with contextlib.suppress(MetastoreUnavailableError):
            await self.metastore.publish(Event(kind="assignment", source=self.node_id,
                                               at=time.time(), data={"model": model.name}))

    async def stopped(self, model: ManagedModel, instances: list[Instance]) -> None:
        """``model`` stopped here: take its engines' records out, and its assignments."""
        for inst in instances:
            if inst.record_id and not inst.remote:
                with contextlib.suppress(MetastoreUnavailableError):
                    await self.metastore.remove_instance(inst.record_id)
        if model.cfg.nodes and not self.closing:
            await self._unassign(model, model.cfg.nodes)

    def used_elsewhere(self, model: ManagedModel, within_s: float) -> bool:
        """Another gateway served ``model`` in the last ``within_s`` seconds."""
        now = time.time()
        for node in self.nodes.values():
            if node.id == self.node_id:
                continue
            last = node.models_used.get(model.name)
            if last is not None and now - last < within_s:
                return True
        return False

    def _models_used(self) -> dict[str, float]:
        """When this gateway last served each model it holds ready (wall time)."""
        from modelfleet.fleet.model import ModelState

        wall, mono = time.time(), time.monotonic()
        for model in self.models.values():
            if model.state is ModelState.READY:
                at = wall if model.in_flight else wall - (mono - model.last_used)
                self.used[model.name] = max(at, self.used.get(model.name, 0.0))
        cutoff = wall - 86400
        self.used = {m: t for m, t in self.used.items() if t > cutoff}
        return dict(self.used)

    # -- records of our own engines ------------------------------------------------

    def _name_record(self, model: ManagedModel, inst: Instance) -> None:
        port = inst.base_url.rsplit(":", 1)[-1]
        inst.record_id = f"{self.node_id}/{model.name}/{inst.role}/{port}"[:200]
        inst.node = self.node_id

    def _record(self, model: ManagedModel, inst: Instance, fence: int) -> InstanceRecord:
        now = time.time()
        return InstanceRecord(id=inst.record_id, model=model.name, role=inst.role,
                              address=inst.base_url, engine=model.cfg.engine, state="ready",
                              node=self.node_id, load=inst.outstanding, pid=inst.pid,
                              fence=fence, started_at=inst.started_at, updated_at=now)

    async def _register(self, model: ManagedModel, instances: list[Instance],
                        fence: int) -> None:
        for inst in instances:
            inst.fence = fence
            with contextlib.suppress(MetastoreUnavailableError):
                await self.metastore.put_instance(self._record(model, inst, fence), self.ttl_s)
        with contextlib.suppress(MetastoreUnavailableError):
            await self.metastore.publish(Event(kind="instance_up", source=self.node_id,
                                               at=time.time(), data={"model": model.name}))

    def _node_record(self) -> NodeRecord:
        return NodeRecord(id=self.node_id, kind=self.kind, host=self.host,
                          started_at=self.started_at, heartbeat_at=time.time(),
                          version=self.version, models_used=self._models_used())

    async def heartbeat(self) -> None:
        """Renew this node's record and its engines' records."""
        await self.metastore.put_node(self._node_record(), self.ttl_s)
        from modelfleet.fleet.model import ModelState

        for model in list(self.models.values()):
            if model.state is not ModelState.READY:
                continue
            for inst in list(model.instances):
                if inst.record_id and not inst.remote:
                    await self.metastore.put_instance(
                        self._record(model, inst, inst.fence), self.ttl_s)

    # -- loops -------------------------------------------------------------------

    async def _heartbeat_loop(self) -> None:
        while True:
            try:
                await self.heartbeat()
            except MetastoreUnavailableError:
                pass  # the metastore says when it is back; records are renewed then
            except Exception:
                log.exception("heartbeat failed")
            await asyncio.sleep(self.ttl_s / 3)

    async def _refresh_loop(self) -> None:
        while True:
            await asyncio.sleep(self.ttl_s / 3)
            try:
                await self.refresh()
            except MetastoreUnavailableError:
                pass
            except Exception:
                log.exception("refreshing the fleet view failed")

    async def _event_loop(self) -> None:
        while True:
            try:
                async for event in self.metastore.subscribe():
                    await self._on_event(event)
                return  # the metastore closed
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("fleet events failed; resubscribing")
                await asyncio.sleep(1)

    async def _on_event(self, event: Event) -> None:
        if event.kind == "abort" and event.source != self.node_id and self.on_abort:
            ids = event.data.get("request_ids")
            if isinstance(ids, list):
                await self.on_abort([str(i)[:256] for i in ids[:1000]])
        elif event.kind == "instance_failed":
            model = event.data.get("model")
            if isinstance(model, str):
                self.failures[model] = str(event.data.get("reason", "failed"))[:500]
        if event.kind in ("instance_up", "instance_down", "instance_failed", "node_up",
                          "node_down", "lock_released", "resync"):
            with contextlib.suppress(MetastoreUnavailableError):
                await self.refresh()
            async with self._changed:
                self._changed.notify_all()

    async def broadcast_abort(self, request_ids: list[str]) -> None:
        with contextlib.suppress(MetastoreUnavailableError):
            await self.metastore.publish(Event(kind="abort", source=self.node_id, at=time.time(),
                                               data={"request_ids": request_ids}))
