"""What each disaggregated layout costs at the gateway: latency per request, by layout.

One gateway serves the same simulator (no simulated compute: every millisecond is
the gateway's and the engines' HTTP handling) in four layouts, and each is asked
the same chat request, one at a time on a keep-alive connection, interleaved in
rounds so drift hits all alike:

    pd      one instance (the plain relay path)
    e-pd    encode, then pd             (an image request: two upstream calls)
    p-d     prefill, then decode        (two upstream calls)
    e-p-d   encode, prefill, decode     (an image request: three upstream calls)

Prints p50 and p99 per layout and each one's excess over pd, which is the cost of
the extra stages (an upstream round trip, a request record and a lease each).

    .venv/bin/python bench/disagg.py            # 2000 requests per layout
    .venv/bin/python bench/disagg.py --smoke    # a few seconds
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import platform
import statistics
import tempfile
import time
from pathlib import Path

import aiohttp
import httpx
import orjson
from benchlib import launch_gateway
from PIL import Image

LAYOUTS = {"pd": None, "e-pd": {"encode": 1, "pd": 1}, "p-d": {"prefill": 1, "decode": 1},
           "e-p-d": {"encode": 1, "prefill": 1, "decode": 1}}


def _image() -> str:
    out = io.BytesIO()
    Image.new("RGB", (8, 8), "red").save(out, format="PNG")
    return "data:image/png;base64," + base64.b64encode(out.getvalue()).decode()


def body(model: str, image: str) -> bytes:
    content = [{"type": "image_url", "image_url": {"url": image}},
               {"type": "text", "text": "what is in this picture"}]
    return orjson.dumps({"model": model, "max_tokens": 4,
                         "messages": [{"role": "user", "content": content}]})


def _ready(url: str) -> bool:
    try:
        models = httpx.get(url + "/v1/models", timeout=1).json()["data"]
    except (httpx.HTTPError, KeyError, ValueError):
        return False
    return len(models) == len(LAYOUTS) and all(m["status"] == "ready" for m in models)


async def run(url: str, n: int, rounds: int) -> dict[str, list[float]]:
    image = _image()
    bodies = {name: body(name, image) for name in LAYOUTS}
    out: dict[str, list[float]] = {name: [] for name in LAYOUTS}
    headers = {"Content-Type": "application/json"}
    async with aiohttp.ClientSession() as s:
        for data in bodies.values():  # warm connections, pools and processes
            for _ in range(20):
                async with s.post(url + "/v1/chat/completions", data=data,
                                  headers=headers) as r:
                    assert r.status == 200, await r.text()
                    await r.read()
        for _ in range(rounds):
            for name, data in bodies.items():
                for _ in range(n // rounds):
                    t = time.perf_counter()
                    async with s.post(url + "/v1/chat/completions", data=data,
                                      headers=headers) as r:
                        await r.read()
                    out[name].append(time.perf_counter() - t)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=2000, help="per layout")
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args()
    n = 100 if args.smoke else args.requests
    with tempfile.TemporaryDirectory() as tmp:
        models = [{"name": name, "engine": "simulator", "model": name, "auto_start": True,
                   "idle_timeout": 0, **({"roles": roles} if roles else {})}
                  for name, roles in LAYOUTS.items()]
        proc, url = launch_gateway(Path(tmp), models, _ready)
        try:
            times = asyncio.run(run(url, n, rounds=5 if not args.smoke else 1))
        finally:
            proc.terminate()
            proc.wait(20)
    base = statistics.median(times["pd"])
    print(f"{platform.node()}: {n} sequential image chats per layout, simulator without "
          "compute")
    print(f"{'layout':8} {'p50 ms':>8} {'p99 ms':>8} {'p50 over pd':>12}")
    for name, values in times.items():
        values.sort()
        p50, p99 = statistics.median(values), values[int(0.99 * (len(values) - 1))]
        print(f"{name:8} {p50 * 1000:8.2f} {p99 * 1000:8.2f} {(p50 - base) * 1000:+11.2f}")


if __name__ == "__main__":
    main()
