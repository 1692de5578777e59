"""A background step run every so often, until closed; a failing step is logged and the
next one runs on time."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger("modelfleet.periodic")


class Periodic:
    def __init__(self, step: Callable[[], Awaitable[None]], every: Callable[[], float],
                 name: str):
        """``every`` is read before each sleep, so a changed setting applies at once."""
        self.step = step
        self.every = every
        self.name = name
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name=self.name)

    async def close(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.every())
            try:
                await self.step()
            except Exception:  # noqa: BLE001 - the next step tries again
                log.exception("%s failed", self.name)
