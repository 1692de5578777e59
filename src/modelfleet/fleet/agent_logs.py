"""The logs of a model's engines on agents, fetched from each agent's control API.

A model that runs on agents (``nodes``, or discovered instances) has its engines'
output on those hosts; the gateway's log routes add the agents' tails to its own
lines, each message prefixed with the node's id. An agent that does not answer
within ``TIMEOUT_S`` is left out (its absence is logged), never waited for.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

import aiohttp

from modelfleet.fleet.logs import LogLine

if TYPE_CHECKING:
    from modelfleet.fleet.coordinator import Coordinator
    from modelfleet.fleet.model import ManagedModel

log = logging.getLogger("modelfleet.fleet.agent_logs")

TIMEOUT_S = 3.0
MAX_MESSAGE = 8192


def agent_urls(coordinator: Coordinator, model: ManagedModel) -> dict[str, str]:
    """Node id → control URL of every agent that runs (or is assigned) ``model``."""
    nodes = {r.node for r in coordinator.ready_records(model)} | set(model.cfg.nodes)
    out = {}
    for node_id in sorted(nodes):
        node = coordinator.nodes.get(node_id)
        if node is not None and node.kind == "agent" and node.control_url:
            out[node_id] = node.control_url.rstrip("/")
    return out


async def agent_tail(coordinator: Coordinator, session: aiohttp.ClientSession,
                     model: ManagedModel, lines: int, token: str | None) -> list[LogLine]:
    """The last ``lines`` lines of ``model`` on each of its agents, oldest first."""
    urls = agent_urls(coordinator, model)
    if not urls:
        return []
    headers = {"Authorization": f"Bearer {token}"} if token else None
    results = await asyncio.gather(*(
        _fetch(session, node, f"{url}/models/{model.name}/logs", lines, headers)
        for node, url in urls.items()))
    merged = [line for found in results for line in found]
    merged.sort(key=lambda line: line.timestamp)
    return merged[-lines:]


async def _fetch(session: aiohttp.ClientSession, node: str, url: str, lines: int,
                 headers: dict[str, str] | None) -> list[LogLine]:
    try:
        async with session.get(url, params={"lines": str(lines)}, headers=headers,
                               timeout=aiohttp.ClientTimeout(total=TIMEOUT_S)) as r:
            if r.status != 200:
                log.warning("agent %s answered %d for its logs", node, r.status)
                return []
            data: Any = await r.json(content_type=None)
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        log.warning("agent %s did not give its logs: %r", node, exc)
        return []
    items = data.get("lines") if isinstance(data, dict) else None
    out = []
    for item in items[:lines] if isinstance(items, list) else []:
        if not isinstance(item, dict):
            continue
        stamp, message = item.get("timestamp"), item.get("message")
        if isinstance(stamp, int | float) and isinstance(message, str):
            out.append(LogLine(float(stamp), f"[{node}] {message[:MAX_MESSAGE]}"))
    return out
