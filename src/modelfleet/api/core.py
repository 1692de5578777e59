"""The service's live parts, built once at start-up and handed to routes."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Annotated

import aiohttp
from fastapi import Depends, Request

from modelfleet.fleet.registry import Fleet
from modelfleet.gateway.proxy import Proxy
from modelfleet.gateway.relay import Relay, make_session
from modelfleet.observability.usage import UsageBook
from modelfleet.settings import Settings


@dataclass
class Core:
    settings: Settings
    session: aiohttp.ClientSession
    fleet: Fleet
    relay: Relay
    usage: UsageBook
    proxy: Proxy
    started_at: float = field(default_factory=time.time)

    @classmethod
    def build(cls, settings: Settings) -> Core:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        session = make_session(settings.timeouts)
        fleet = Fleet(settings, session)
        relay = Relay(session, settings.timeouts)
        usage = UsageBook()
        return cls(settings, session, fleet, relay, usage, Proxy(settings, fleet, relay, usage))

    async def start(self) -> None:
        await self.fleet.start()

    async def close(self) -> None:
        await self.fleet.close()
        await self.session.close()


def get_core(request: Request) -> Core:
    core: Core = request.app.state.core
    return core


CoreDep = Annotated[Core, Depends(get_core)]
