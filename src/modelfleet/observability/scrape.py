"""Engine-side figures, scraped from each ready instance's own ``/metrics``.

vLLM, SGLang and our simulator and built-in engine publish Prometheus metrics;
we read the means of their request histograms (time to first token, time per
output token, prefill, queue, end to end) and their running and waiting gauges,
every ``interval_s`` seconds. An engine without ``/metrics`` (or that fails to
answer) just has no engine-side figures.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from modelfleet.fleet.model import ModelState
from modelfleet.fleet.registry import Fleet
from modelfleet.observability.periodic import Periodic

log = logging.getLogger("modelfleet.scrape")

# Our name → the engines' histogram names (vLLM's, then SGLang's).
HISTOGRAMS = {
    "ttft": ("vllm:time_to_first_token_seconds", "sglang:time_to_first_token_seconds"),
    "tpot": ("vllm:request_time_per_output_token_seconds",
             "vllm:time_per_output_token_seconds", "sglang:time_per_output_token_seconds"),
    "prefill": ("vllm:request_prefill_time_seconds",),
    "queue": ("vllm:request_queue_time_seconds", "sglang:queue_time_seconds"),
    "e2e": ("vllm:e2e_request_latency_seconds", "sglang:e2e_request_latency_seconds"),
}
GAUGES = {"running": ("vllm:num_requests_running", "sglang:num_running_reqs"),
          "waiting": ("vllm:num_requests_waiting", "sglang:num_queue_reqs")}
MAX_BYTES = 4 * 1024 * 1024


def parse(text: str) -> dict[str, float]:
    """Means of the known histograms and the gauges' values, summed over label sets."""
    sums: dict[str, float] = {}
    counts: dict[str, float] = {}
    gauges: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            name = sample.name
            if name.endswith("_sum"):
                sums[name[:-4]] = sums.get(name[:-4], 0.0) + sample.value
            elif name.endswith("_count"):
                counts[name[:-6]] = counts.get(name[:-6], 0.0) + sample.value
            else:
                gauges[name] = gauges.get(name, 0.0) + sample.value
    out: dict[str, float] = {}
    for ours, names in HISTOGRAMS.items():
        for name in names:
            if counts.get(name):
                out[ours] = sums.get(name, 0.0) / counts[name]
                break
    for ours, names in GAUGES.items():
        for name in names:
            if name in gauges:
                out[ours] = gauges[name]
                break
    return out


class EngineScraper:
    def __init__(self, fleet: Fleet, session: aiohttp.ClientSession, interval_s: float = 15):
        self.fleet = fleet
        self.session = session
        self.interval_s = interval_s
        self.stats: dict[str, dict[str, float]] = {}  # by instance address
        self._loop = Periodic(self.scrape_once, lambda: self.interval_s, "engine scraping")

    def start(self) -> None:
        self._loop.start()

    async def close(self) -> None:
        await self._loop.close()

    async def scrape_once(self) -> None:
        # Ours, and engines started by hand for seed 000's roles (endpoints); not the
        # other external servers (providers have no /metrics of this kind).
        targets = [(m, i) for m in list(self.fleet.models.values())
                   if m.state is ModelState.READY and (m.adapter.launched or m.cfg.endpoints)
                   for i in list(m.instances)]
        results = await asyncio.gather(*(self._one(i.base_url, i.session) for _, i in targets))
        live = {i.base_url for _, i in targets}
        self.stats = {k: v for k, v in self.stats.items() if k in live}
        for (_, inst), figures in zip(targets, results, strict=True):
            if figures is not None:
                self.stats[inst.base_url] = figures

    async def _one(self, base_url: str, session: aiohttp.ClientSession | None = None
                   ) -> dict[str, float] | None:
        try:
            async with (session or self.session).get(
                    base_url + "/metrics", timeout=aiohttp.ClientTimeout(total=5)) as resp:
                if resp.status != 200:
                    return None
                body = await resp.content.read(MAX_BYTES)
            return parse(body.decode("utf-8", "replace"))
        except (aiohttp.ClientError, TimeoutError, ValueError):
            return None

    def get(self, address: str, default: Any = None) -> Any:
        return self.stats.get(address, default if default is not None else {})
