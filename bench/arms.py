"""The arms of ``bench/compare.py``: four ways to reach the same two upstreams.

    direct      client → upstream
    nginx       client → nginx proxy_pass (upstream keep-alive) → upstream
    litellm     client → LiteLLM proxy (master key) → upstream
    modelfleet  client → modelfleet (API key with RPM and TPM limits, request records
                and Prometheus metrics on, ``external`` models) → upstream

Upstreams: nginx answering one chat.completion for non-streaming requests, and
``bench/sse_upstream.py`` for streams. ``Stack`` starts them all and stops
them all; ``gateways`` are the processes a pinned run puts on the gateway core,
``load_side`` the upstreams that share the other core with the load generator.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import orjson
from benchlib import launch_gateway
from litellm_arm import start_litellm
from procs import Service
from upstreams import nginx_proxy, nginx_upstream, sse_upstream

ARMS = ("direct", "nginx", "litellm", "modelfleet")
CHAT_PATH = "/v1/chat/completions"
MESSAGES = [{"role": "user", "content": "Say hello to the benchmark."}]


@dataclass
class Arm:
    name: str
    url: str  # base URL for non-streaming requests
    sse_url: str  # base URL for streams
    headers: dict[str, str] = field(default_factory=dict)
    service: Service | None = None  # the gateway's process; None for direct

    def body(self, stream: bool = False) -> bytes:
        payload = {"model": "bench-sse" if stream else "bench", "messages": MESSAGES,
                   "max_tokens": 20}
        if stream:
            payload["stream"] = True
        return orjson.dumps(payload)


@dataclass
class Stack:
    arms: dict[str, Arm] = field(default_factory=dict)
    load_side: list[Service] = field(default_factory=list)

    @property
    def gateways(self) -> list[Service]:
        return [arm.service for arm in self.arms.values() if arm.service is not None]

    def stop(self) -> None:
        for service in [*self.gateways, *self.load_side]:
            service.stop()


def start_stack(tmp: Path, chunks: int, interval_ms: float,
                arms: tuple[str, ...] = ARMS) -> Stack:
    """Upstreams and every arm in ``arms``, each checked with one request of each kind."""
    stack = Stack()
    try:
        up, up_url = nginx_upstream(tmp, workers=2)
        stack.load_side.append(up)
        sse, sse_url = sse_upstream(tmp, chunks, interval_ms)
        stack.load_side.append(sse)
        stack.arms["direct"] = Arm("direct", up_url, sse_url)
        if "nginx" in arms:
            proxy, url, proxy_sse = nginx_proxy(tmp, up_url, sse_url)
            stack.arms["nginx"] = Arm("nginx", url, proxy_sse, service=proxy)
        if "litellm" in arms:
            service, url, key = start_litellm(tmp, {"bench": up_url, "bench-sse": sse_url})
            stack.arms["litellm"] = Arm("litellm", url, url, {"Authorization": f"Bearer {key}"},
                                        service)
        if "modelfleet" in arms:
            stack.arms["modelfleet"] = start_modelfleet(tmp / "modelfleet", up_url, sse_url)
        for arm in stack.arms.values():
            check_arm(arm)
    except BaseException:
        stack.stop()
        raise
    return stack


def start_modelfleet(tmp: Path, upstream: str, sse: str) -> Arm:
    """The gateway with auth on: an admin password, and an API key with high limits."""
    tmp.mkdir(parents=True, exist_ok=True)
    password = secrets.token_urlsafe(24)
    models = [{"name": name, "engine": "external", "model": base + "/v1", "auto_start": True,
               "idle_timeout": 0} for name, base in (("bench", upstream), ("bench-sse", sse))]
    proc, url = launch_gateway(tmp, models, _health_ok, auth={"admin_password": password})
    service = Service("modelfleet", proc, tmp / "gateway.log")
    try:
        token = httpx.post(url + "/api/auth/token", timeout=30,
                           json={"username": "admin", "password": password}
                           ).json()["access_token"]
        made = httpx.post(url + "/api/keys", headers={"Authorization": f"Bearer {token}"},
                          json={"name": "bench", "rpm": 10**9, "tpm": 10**12}, timeout=30)
        made.raise_for_status()
    except BaseException:
        service.stop()
        raise
    return Arm("modelfleet", url, url, {"Authorization": f"Bearer {made.json()['key']}"},
               service)


def _health_ok(url: str) -> bool:
    try:
        return httpx.get(url + "/check_health", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def check_arm(arm: Arm, timeout: float = 60) -> None:
    """One request and one stream through ``arm``, retried until it answers 200."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            plain = httpx.post(arm.url + CHAT_PATH, content=arm.body(), headers=arm.headers,
                               timeout=30)
            streamed = httpx.post(arm.sse_url + CHAT_PATH, content=arm.body(stream=True),
                                  headers=arm.headers, timeout=30)
            if plain.status_code == streamed.status_code == 200 and b"[DONE]" in streamed.content:
                return
            problem = f"{plain.status_code} {plain.text[:300]} / {streamed.status_code}"
        except httpx.HTTPError as exc:
            problem = repr(exc)
        if time.monotonic() > deadline:
            tail = arm.service.tail() if arm.service else ""
            raise RuntimeError(f"arm {arm.name} does not answer: {problem}\n{tail}")
        time.sleep(0.5)
