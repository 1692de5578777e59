"""Periodic health checks of ready instances.

Every ``health_check_interval`` seconds each instance of a ready model is asked
its engine's health path. An instance that fails ``UNHEALTHY_AFTER`` checks in
a row is stopped: the crash watch then replaces it (other replicas keep
serving) or marks the model failed, exactly as if the engine had died. An
external endpoint, which we do not run, is only marked unhealthy.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping

from modelfleet.errors import FleetError
from modelfleet.fleet.model import Instance, ManagedModel, ModelState

log = logging.getLogger("modelfleet.health")

UNHEALTHY_AFTER = 3
PROBE_TIMEOUT_S = 5.0
TICK_S = 1.0


async def check_instance(model: ManagedModel, inst: Instance,
                         timeout: float = PROBE_TIMEOUT_S) -> None:
    try:
        await model.probe(inst.base_url + model.adapter.health_path, timeout=timeout,
                          session=inst.session)
    except FleetError as exc:
        inst.health_failures += 1
        inst.healthy = False
        model.log.append(f"[modelfleet] health check {inst.health_failures}/"
                         f"{UNHEALTHY_AFTER} of {inst.base_url} failed: {exc.message}")
        if (inst.health_failures >= UNHEALTHY_AFTER and inst.process is not None
                and inst in model.instances):
            model.log.append(f"[modelfleet] stopping unhealthy engine pid {inst.pid}")
            log.warning("%s: engine pid %s failed %d health checks; stopping it",
                        model.name, inst.pid, inst.health_failures)
            await inst.process.stop(grace=2)
        return
    if inst.healthy is False:
        model.log.append(f"[modelfleet] {inst.base_url} is healthy again")
    inst.health_failures = 0
    inst.healthy = True


async def check_all(models: Mapping[str, ManagedModel], timeout: float = PROBE_TIMEOUT_S) -> None:
    checks = [check_instance(m, i, timeout) for m in list(models.values())
              if m.state is ModelState.READY for i in list(m.instances)]
    await asyncio.gather(*checks, return_exceptions=True)


async def health_loop(models: Mapping[str, ManagedModel], interval: Callable[[], float]) -> None:
    """Check every ``interval()`` seconds (read each tick, so a change applies at once;
    0 turns checks off)."""
    last = time.monotonic()
    while True:
        await asyncio.sleep(TICK_S)
        every = interval()
        if every <= 0 or time.monotonic() - last < every:
            continue
        last = time.monotonic()
        try:
            # A check never outlasts the interval, so checks do not pile up.
            await check_all(models, min(PROBE_TIMEOUT_S, max(every, 0.5)))
        except Exception:
            log.exception("health checks failed")
