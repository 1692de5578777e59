"""The service's live parts, built once at start-up and handed to routes."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Annotated, Any

import aiohttp
from fastapi import Depends, Request

from modelfleet import __version__, runtime_config
from modelfleet.auth import redact
from modelfleet.auth.authenticator import Authenticator
from modelfleet.auth.bootstrap import auth_configured, check_bind, ensure_admin
from modelfleet.auth.tokens import TokenIssuer, load_secret
from modelfleet.fleet.coordinator import Coordinator, default_node_id
from modelfleet.fleet.registry import Fleet
from modelfleet.gateway.admission import Admission
from modelfleet.gateway.proxy import Proxy
from modelfleet.gateway.relay import Relay, make_session
from modelfleet.metastore import open_metastore
from modelfleet.observability.alerts import AlertEngine
from modelfleet.observability.feed import LiveFeed
from modelfleet.observability.records import MetricsBook, summary_of
from modelfleet.observability.rollup import Roller
from modelfleet.observability.scrape import EngineScraper
from modelfleet.observability.system import SystemSample, SystemSampler, gpu_events
from modelfleet.settings import Settings
from modelfleet.store import Store

log = logging.getLogger("modelfleet.core")


@dataclass
class Core:
    settings: Settings
    session: aiohttp.ClientSession
    fleet: Fleet
    relay: Relay
    metrics: MetricsBook
    admission: Admission
    system: SystemSampler
    alerts: AlertEngine
    engine_stats: EngineScraper
    feed: LiveFeed
    roller: Roller
    proxy: Proxy
    store: Store
    auth: Authenticator
    issuer: TokenIssuer
    coordinator: Coordinator
    started_at: float = field(default_factory=time.time)
    closing: bool = False

    @classmethod
    async def open(cls, settings: Settings) -> Core:
        """Open the store, make it say what the config file says, and build the fleet
        from it: models made through the API survive restarts beside the file's."""
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        store = await Store.open(settings)
        try:
            synced = await store.models.upsert_from_config(settings.models)
            if synced.skipped:
                log.warning("config models %s are held by API-made models of the same name",
                            synced.skipped)
            rows = await store.models.all()
            configs = [row.to_model_config() for row in rows]
            await ensure_admin(settings, store)
            check_bind(settings, bool(settings.auth.admin_password)
                       or await auth_configured(store))
            issuer = TokenIssuer(load_secret(settings.auth.jwt_secret, settings.data_dir),
                                 settings.auth.jwt_ttl_s)
            redact.add_secrets([issuer.secret, settings.auth.admin_password])
            auth = Authenticator(store, issuer,
                                 admin_configured=bool(settings.auth.admin_password))
            await auth.refresh()
        except BaseException:
            await store.close()
            raise
        session = make_session(settings.timeouts)
        coordinator = Coordinator(
            open_metastore(settings.redis_url, prefix=settings.redis_prefix),
            settings.fleet.node_id or default_node_id(settings.server.port),
            ttl_s=settings.fleet.ttl_s, data_dir=settings.data_dir,
            host=settings.fleet.advertise_host or settings.server.host, version=__version__)
        fleet = Fleet(settings, session, configs, coordinator=coordinator)
        for row in rows:
            if row.name in fleet.models:
                fleet.bind_id(row.name, row.id)
        try:
            await runtime_config.restore(settings, store, fleet)
        except BaseException:
            await session.close()
            await store.close()
            raise
        relay = Relay(session, settings.timeouts)
        metrics = MetricsBook()
        admission = Admission.from_settings(settings)
        proxy = Proxy(settings, fleet, relay, metrics, admission)

        async def abort_here(request_ids: list[str]) -> None:  # another gateway's POST /abort
            await asyncio.gather(*(proxy.inflight.abort(rid) for rid in request_ids))

        coordinator.on_abort = abort_here
        system = SystemSampler(settings)
        core = cls(settings=settings, session=session, fleet=fleet, relay=relay,
                   metrics=metrics, admission=admission, proxy=proxy, store=store, auth=auth,
                   issuer=issuer, coordinator=coordinator, system=system, alerts=None,  # type: ignore[arg-type]
                   engine_stats=EngineScraper(fleet, session),
                   feed=None, roller=Roller(store, settings, system.latest))  # type: ignore[arg-type]
        core.alerts = AlertEngine(store, settings, core.snapshot,
                                  interval_s=settings.alert_interval)
        core.feed = LiveFeed(core.model_states, core.request_figures)
        system.subscribe(core.publish_gpus)
        core.alerts.subscribe(core.feed.publish)
        metrics.listeners.append(core.roller.add)
        return core

    def publish_gpus(self, sample: SystemSample) -> None:
        for event in gpu_events(sample):
            self.feed.publish(event)

    def model_states(self) -> dict[str, dict[str, str]]:
        return {m.name: {"status": m.state.value, "health": m.health}
                for m in self.fleet.models.values()}

    def request_figures(self) -> dict[str, dict[str, Any]]:
        """Each model's live figures, for the feed's ``request_metrics``."""
        queues = self.admission.stats()["models"]
        out = {}
        for model in self.fleet.models.values():
            series = self.metrics.models.get(model.name)
            figures = summary_of(series) if series else None
            out[model.name] = {
                "running": model.in_flight,
                "waiting": queues.get(model.name, {}).get("waiting", 0),
                "requests_per_second": figures["requests_per_second"] if figures else 0.0,
                "ttft_p50": figures["ttft"]["p50"] if figures else None,
                "ttft_p95": figures["ttft"]["p95"] if figures else None,
                "latency_p50": figures["latency"]["p50"] if figures else None,
                "latency_p95": figures["latency"]["p95"] if figures else None,
            }
        return out

    def snapshot(self) -> dict[str | None, dict[str, float]]:
        """What alert rules read: request figures (global and per model), the host's
        and the queues'."""
        figures = self.metrics.snapshot()
        figures[None].update(self.system.metrics())
        queues = self.admission.stats()["models"]
        for model in self.fleet.models.values():
            mine = figures.setdefault(model.name, {})
            mine["running_requests"] = float(model.in_flight)
            mine["queue_waiting"] = float(queues.get(model.name, {}).get("waiting", 0))
        figures[None]["running_requests"] = float(self.fleet.in_flight())
        figures[None]["queue_waiting"] = sum(
            float(gate.get("waiting", 0)) for gate in queues.values())
        return figures

    async def start(self) -> None:
        await self.system.start()
        await self.coordinator.start(self.fleet.models)
        await self.fleet.start()
        self.alerts.start()
        self.engine_stats.start()
        self.feed.start()
        self.roller.start()

    def begin_shutdown(self) -> None:
        """The server stops taking connections: end every open log stream now, so that
        followers get their ``stream_end`` before connections are cut."""
        self.closing = True
        for model in self.fleet.models.values():
            model.log.end_streams()

    async def close(self) -> None:
        try:
            await self.feed.close()
            await self.roller.close()
            await self.alerts.close()
            await self.engine_stats.close()
            await self.system.close()
            self.coordinator.closing = True
            await self.fleet.close()
            await self.coordinator.close()
            await self.proxy.media.close()
            await self.admission.close()
            self.relay.close()
            await self.session.close()
        finally:
            await self.store.close()


def get_core(request: Request) -> Core:
    core: Core = request.app.state.core
    return core


CoreDep = Annotated[Core, Depends(get_core)]
