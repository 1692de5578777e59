"""The upstreams and the nginx arm of ``bench/compare.py``.

* ``nginx_upstream``: nginx answering every request with one chat.completion
  (``return 200 '<json>'``): as fast an upstream as this machine has.
* ``sse_upstream``: ``bench/sse_upstream.py``, a paced SSE stream.
* ``nginx_proxy``: nginx ``proxy_pass`` to both, with upstream keep-alive
  (``proxy_buffering off`` for the stream), the reference reverse proxy.

Each nginx runs in the foreground (``daemon off``) as our child with its own
configuration and prefix directory, not the system service.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import orjson
from procs import Service, free_port, start, wait_port

HERE = Path(__file__).resolve().parent
CHAT_COMPLETION = orjson.dumps({
    "id": "chatcmpl-bench", "object": "chat.completion", "created": 1, "model": "bench",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello there!"},
                 "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 9, "completion_tokens": 3, "total_tokens": 12}}).decode()


def nginx_binary() -> str:
    found = shutil.which("nginx") or (Path("/usr/sbin/nginx").is_file() and "/usr/sbin/nginx")
    if not found:
        raise SystemExit("nginx is not installed (Debian: apt-get install -y nginx wrk)")
    return str(found)


def _conf(prefix: Path, workers: int, http_body: str) -> str:
    temp = "\n".join(f"  {kind}_temp_path {prefix}/tmp/{kind};"
                     for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    return f"""worker_processes {workers};
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 8192; }}
http {{
  access_log off;
  keepalive_requests 10000000;
  keepalive_timeout 120s;
{temp}
{http_body}
}}
"""


def _start_nginx(name: str, tmp: Path, workers: int, http_body: str, port: int) -> Service:
    prefix = tmp / name
    (prefix / "tmp").mkdir(parents=True, exist_ok=True)
    conf = prefix / "nginx.conf"
    conf.write_text(_conf(prefix, workers, http_body))
    service = start(name, [nginx_binary(), "-p", str(prefix), "-c", str(conf),
                           "-g", "daemon off;"], prefix / "stderr.log")
    wait_port(service, port, 20)
    return service


def nginx_upstream(tmp: Path, workers: int = 1) -> tuple[Service, str]:
    """nginx answering every request with ``CHAT_COMPLETION``; returns it and its URL."""
    port = free_port()
    body = f"""  server {{
    listen 127.0.0.1:{port} backlog=4096;
    default_type application/json;
    location / {{ return 200 '{CHAT_COMPLETION}'; }}
  }}"""
    return _start_nginx("nginx-upstream", tmp, workers, body, port), f"http://127.0.0.1:{port}"


def nginx_proxy(tmp: Path, upstream: str, sse: str, workers: int = 2
                ) -> tuple[Service, str, str]:
    """nginx proxying one port to ``upstream`` and another to ``sse``; returns both URLs."""
    port, sse_port = free_port(), free_port()
    servers = []
    for name, listen, target, extra in (("up", port, upstream, ""),
                                        ("sse", sse_port, sse, "proxy_buffering off; ")):
        address = target.removeprefix("http://")
        servers.append(f"""  upstream {name} {{ server {address}; keepalive 128; }}
  server {{
    listen 127.0.0.1:{listen} backlog=4096;
    location / {{ proxy_pass http://{name}; proxy_http_version 1.1;
      proxy_set_header Connection ""; {extra}}}
  }}""")
    service = _start_nginx("nginx-proxy", tmp, workers, "\n".join(servers), port)
    wait_port(service, sse_port, 20)
    return service, f"http://127.0.0.1:{port}", f"http://127.0.0.1:{sse_port}"


def sse_upstream(tmp: Path, chunks: int, interval_ms: float) -> tuple[Service, str]:
    """``bench/sse_upstream.py`` on a free port; returns it and its URL."""
    port = free_port()
    service = start("sse-upstream", [sys.executable, str(HERE / "sse_upstream.py"),
                                     "--port", str(port), "--chunks", str(chunks),
                                     "--interval-ms", str(interval_ms)], tmp / "sse.log")
    wait_port(service, port, 30)
    return service, f"http://127.0.0.1:{port}"
