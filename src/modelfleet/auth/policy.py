"""Which role each route needs: the one table every request is checked against.

- public: health checks, sign-in and the dashboard's files (``/ui``); ``/metrics``
  and the API docs unless the config says otherwise;
- ``user``: inference, and reading anything that is not a secret;
- ``admin``: every change to models, keys, users, config and alerts, reading
  keys and users, and the engine controls (``/abort``, ``/start_profile``,
  ``/stop_profile``: they reach other callers' requests and every engine).

A route not named here falls to the strictest rule that fits its method: a new
route is never public by accident.
"""

from __future__ import annotations

import re

from modelfleet.settings import AuthSettings

PUBLIC = frozenset({"/health", "/health/full", "/check_health", "/api/auth/token",
                    "/api/v1/auth/token"})
DOCS = frozenset({"/docs", "/redoc", "/openapi.json", "/docs/oauth2-redirect"})
METRICS = frozenset({"/metrics", "/metrics/prometheus"})
CONTROL = frozenset({"/abort", "/start_profile", "/stop_profile"})

# Writes a user may make: inference, wherever it is served.
_USER_WRITES = re.compile(
    r"^/(v1|v2)/.+$"
    r"|^/(rerank|tokenize|detokenize|pooling|score|classify|invocations|generate"
    r"|generate_stream)$"
    r"|^/api(/v1)?/models/[^/]+/(generate|chat/completions|embeddings)$"
)
# Reads that only an admin may make.
_ADMIN_READS = re.compile(r"^/api(/v1)?/(keys|users)(/.*)?$")


def required_role(method: str, path: str, auth: AuthSettings) -> str | None:
    """None (public), ``user`` or ``admin``."""
    if path in CONTROL:
        return "admin"
    if path in PUBLIC:
        return None
    if path in DOCS and auth.public_docs:
        return None
    if path in METRICS and auth.public_metrics:
        return None
    if method in ("GET", "HEAD") and (path == "/ui" or path.startswith("/ui/")):
        return None  # the dashboard's static files; its API calls carry the user's token
    if method in ("GET", "HEAD", "OPTIONS"):
        return "admin" if _ADMIN_READS.match(path) else "user"
    return "user" if _USER_WRITES.match(path) else "admin"
