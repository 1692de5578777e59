"""An open-loop load generator: requests at a fixed arrival rate, whatever the answers do.

Request ``i`` is due at ``start + i / rate``; it is sent then (at once when the
generator is behind) on a pooled keep-alive connection, and its latency is
counted from that scheduled time, so a slow server cannot slow the arrivals
and hide its queue (no coordinated omission). Non-streaming: latency to the
whole answer. Streaming: time to the first content chunk and the number of
content chunks received, parsed event by event.

Run as a script (``bench/compare.py`` runs it pinned to a core) it prints one
JSON object: ``latency_us`` (every request's, sorted), ``ttft_us``, ``chunks``
(content chunks received in all), ``requests``, ``timeouts`` (no complete
answer within ``timeout`` s) and ``errors`` (any other failure, with a sample).

    python bench/openloop.py URL --rate 500 --seconds 5 --body '{...}' [--stream]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from typing import Any

import aiohttp
import orjson


class Tally:
    def __init__(self) -> None:
        self.latency_us: list[int] = []
        self.ttft_us: list[int] = []
        self.chunks = 0
        self.errors = 0
        self.timeouts = 0
        self.error_sample = ""

    def fail(self, what: str) -> None:
        self.errors += 1
        self.error_sample = self.error_sample or what[:300]


async def _one(session: aiohttp.ClientSession, url: str, body: bytes, headers: dict[str, str],
               due: float, stream: bool, tally: Tally) -> None:
    try:
        async with session.post(url, data=body, headers=headers) as resp:
            if resp.status != 200:
                tally.fail(f"{resp.status}: {(await resp.read())[:200]!r}")
                return
            if not stream:
                await resp.read()
                tally.latency_us.append(int((time.perf_counter() - due) * 1e6))
                return
            first = True
            async for line in resp.content:
                if not line.startswith(b"data: {"):
                    continue
                if _has_content(line[6:]):
                    if first:
                        tally.ttft_us.append(int((time.perf_counter() - due) * 1e6))
                        first = False
                    tally.chunks += 1
            tally.latency_us.append(int((time.perf_counter() - due) * 1e6))
    except TimeoutError:
        tally.timeouts += 1  # an overwhelmed server: counted, not an error of the arm
    except (aiohttp.ClientError, OSError) as exc:
        tally.fail(f"{type(exc).__name__}: {exc}")


def _has_content(data: bytes) -> bool:
    try:
        choices = orjson.loads(data).get("choices") or []
    except orjson.JSONDecodeError:
        return False
    return any((c.get("delta") or {}).get("content") for c in choices)


async def run(url: str, body: bytes, headers: dict[str, str], rate: float, seconds: float,
              stream: bool, connections: int = 1024, timeout: float = 30.0) -> dict[str, Any]:
    tally = Tally()
    total = max(1, int(rate * seconds))
    connector = aiohttp.TCPConnector(limit=connections, limit_per_host=connections)
    headers = {"Content-Type": "application/json", **headers}
    async with aiohttp.ClientSession(connector=connector,
                                     timeout=aiohttp.ClientTimeout(total=timeout)) as session:
        # Open a few connections first, so the run does not measure their handshakes.
        await asyncio.gather(*(_one(session, url, body, headers, time.perf_counter(), stream,
                                    Tally()) for _ in range(min(8, total))))
        tasks = set()
        start = time.perf_counter() + 0.05
        for i in range(total):
            due = start + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            task = asyncio.create_task(_one(session, url, body, headers, due, stream, tally))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        while tasks:
            await asyncio.gather(*list(tasks))
    tally.latency_us.sort()
    tally.ttft_us.sort()
    return {"requests": total, "errors": tally.errors, "timeouts": tally.timeouts,
            "error_sample": tally.error_sample,
            "latency_us": tally.latency_us, "ttft_us": tally.ttft_us, "chunks": tally.chunks}


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("url")
    parser.add_argument("--rate", type=float, required=True, help="requests per second")
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--body", required=True)
    parser.add_argument("--header", action="append", default=[], help="Name: value")
    parser.add_argument("--stream", action="store_true")
    args = parser.parse_args()
    headers = dict(h.split(": ", 1) for h in args.header)
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    result = asyncio.run(run(args.url, args.body.encode(), headers, args.rate, args.seconds,
                             args.stream))
    sys.stdout.buffer.write(orjson.dumps(result))


if __name__ == "__main__":
    main()
