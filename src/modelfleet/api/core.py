"""The service's live parts, built once at start-up and handed to routes."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Annotated

import aiohttp
from fastapi import Depends, Request

from modelfleet import runtime_config
from modelfleet.auth import redact
from modelfleet.auth.authenticator import Authenticator
from modelfleet.auth.bootstrap import auth_configured, check_bind, ensure_admin
from modelfleet.auth.tokens import TokenIssuer, load_secret
from modelfleet.fleet.registry import Fleet
from modelfleet.gateway.proxy import Proxy
from modelfleet.gateway.relay import Relay, make_session
from modelfleet.observability.usage import UsageBook
from modelfleet.settings import Settings
from modelfleet.store import Store

log = logging.getLogger("modelfleet.core")


@dataclass
class Core:
    settings: Settings
    session: aiohttp.ClientSession
    fleet: Fleet
    relay: Relay
    usage: UsageBook
    proxy: Proxy
    store: Store
    auth: Authenticator
    issuer: TokenIssuer
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
        fleet = Fleet(settings, session, configs)
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
        usage = UsageBook()
        proxy = Proxy(settings, fleet, relay, usage)
        return cls(settings=settings, session=session, fleet=fleet, relay=relay, usage=usage,
                   proxy=proxy, store=store, auth=auth, issuer=issuer)

    async def start(self) -> None:
        await self.fleet.start()

    def begin_shutdown(self) -> None:
        """The server stops taking connections: end every open log stream now, so that
        followers get their ``stream_end`` before connections are cut."""
        self.closing = True
        for model in self.fleet.models.values():
            model.log.end_streams()

    async def close(self) -> None:
        try:
            await self.fleet.close()
            await self.proxy.media.close()
            await self.session.close()
        finally:
            await self.store.close()


def get_core(request: Request) -> Core:
    core: Core = request.app.state.core
    return core


CoreDep = Annotated[Core, Depends(get_core)]
