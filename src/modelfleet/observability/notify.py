"""Where alerts go: a rule's notification channels, checked, and the notifier that sends.

Channels, as a rule's ``notification_channels`` lists them:

- ``"log"``: a WARNING line when an alert fires, INFO when it resolves;
- ``"webhook"`` (with the rule's ``webhook_url``) or ``{"type": "webhook", "url",
  "headers"}``: a JSON POST ``{"alert", "state", "rule", "timestamp"}``;
- ``"email"`` (seed 002): accepted, but there is no mail server here, so the rule
  carries it as ``unsupported`` and says so in its ``warnings``.

Webhooks are sent in the background: ``Notifier.send`` returns at once, so a slow
receiver never holds up evaluation. A POST is tried 3 times (after 0.5 s, then 1 s)
on connection errors, timeouts, 429 and 5xx, 5 s each; redirects are not followed and
at most 64 KiB of the answer is read. A delivery that fails for good is logged and
handed to ``on_failure`` (the engine notes it in the event's message).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from modelfleet.errors import InvalidRequestError

log = logging.getLogger("modelfleet.alerts")

CHANNEL_TYPES = ("log", "webhook", "email")
MAX_CHANNELS = 8
MAX_URL_CHARS = 2048
MAX_HEADERS = 20
READ_CAP_BYTES = 64 * 1024
TIMEOUT_S = 5.0
BACKOFF_S = (0.5, 1.0, 2.0)
TRIES = 3
EMAIL_WARNING = ("email: not sent, no mail server is configured in modelfleet; "
                 "use a webhook to reach mail")

Channel = dict[str, Any]


def _invalid(message: str, param: str) -> InvalidRequestError:
    err = InvalidRequestError(message, param=param)
    err.status = 422
    return err


def check_url(url: object, param: str) -> str:
    """An absolute http(s) URL with a host, or a 422 naming ``param``."""
    if not isinstance(url, str) or not url:
        raise _invalid("a webhook needs a url", param)
    if len(url) > MAX_URL_CHARS:
        raise _invalid(f"webhook url is longer than {MAX_URL_CHARS} characters", param)
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as exc:
        raise _invalid(f"webhook url {url!r} is not a URL: {exc}", param) from None
    if parts.scheme not in ("http", "https"):
        raise _invalid(f"webhook url must be http:// or https://, not {parts.scheme!r}:",
                       param)
    if not parts.hostname:
        raise _invalid(f"webhook url {url!r} has no host", param)
    if any(c.isspace() or ord(c) < 32 for c in url):
        raise _invalid("webhook url contains whitespace or control characters", param)
    return url


def _check_headers(headers: object, param: str) -> dict[str, str]:
    if headers is None:
        return {}
    if not isinstance(headers, Mapping) or len(headers) > MAX_HEADERS:
        raise _invalid(f"headers must be an object of at most {MAX_HEADERS} strings", param)
    out: dict[str, str] = {}
    for name, value in headers.items():
        if (not isinstance(name, str) or not isinstance(value, str) or not name
                or any(c in name + value for c in "\r\n\0") or len(name) + len(value) > 4096):
            raise _invalid(f"header {str(name)[:40]!r} must be a one-line string", param)
        out[name] = value
    return out


def parse_channels(raw: object, webhook_url: str | None = None,
                   ) -> tuple[list[Channel], list[str]]:
    """The normalised channels of ``notification_channels`` and the warnings to show with
    the rule. 422 (``param`` naming the entry) for anything else."""
    param = "notification_channels"
    if not isinstance(raw, Sequence) or isinstance(raw, str | bytes):
        raise _invalid("notification_channels must be a list", param)
    if len(raw) > MAX_CHANNELS:
        raise _invalid(f"at most {MAX_CHANNELS} notification channels", param)
    channels: list[Channel] = []
    warnings: list[str] = []
    for i, entry in enumerate(raw):
        where = f"{param}[{i}]"
        spec: Mapping[str, Any] = {"type": entry} if isinstance(entry, str) else entry
        if not isinstance(spec, Mapping) or spec.get("type") not in CHANNEL_TYPES:
            kind = spec.get("type") if isinstance(spec, Mapping) else entry
            raise _invalid(f"notification channel {kind!r} is not one of "
                           f"{', '.join(CHANNEL_TYPES)}", where)
        kind = spec["type"]
        if kind == "log":
            channels.append({"type": "log"})
        elif kind == "email":
            to = spec.get("to")
            channels.append({"type": "email", "status": "unsupported",
                             **({"to": to} if isinstance(to, str | list) else {})})
            if EMAIL_WARNING not in warnings:
                warnings.append(EMAIL_WARNING)
        else:
            url = spec.get("url", webhook_url if isinstance(entry, str) else None)
            if url is None:
                raise _invalid('"webhook" needs the rule\'s webhook_url, or give '
                               '{"type": "webhook", "url": "http://…"}', where)
            channels.append({"type": "webhook", "url": check_url(url, f"{where}.url"),
                             "headers": _check_headers(spec.get("headers"),
                                                       f"{where}.headers")})
    if webhook_url is not None and not any(c["type"] == "webhook" for c in channels):
        check_url(webhook_url, "webhook_url")
        channels.append({"type": "webhook", "url": webhook_url, "headers": {}})
    return channels, warnings


def channel_warnings(channels: Sequence[Mapping[str, Any]]) -> list[str]:
    """The warnings a stored rule's channels call for (as ``parse_channels`` gave)."""
    return [EMAIL_WARNING] if any(c.get("type") == "email" for c in channels) else []


def redact_channels(channels: Sequence[Mapping[str, Any]]) -> list[Channel]:
    """Channels as a non-admin may see them: no header values, no URL path or query
    (a webhook URL is often its own secret)."""
    out: list[Channel] = []
    for c in channels:
        shown = dict(c)
        if c.get("type") == "webhook":
            parts = urlsplit(str(c.get("url", "")))
            shown["url"] = f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}/…"
            shown["headers"] = {k: "***" for k in c.get("headers") or {}}
        out.append(shown)
    return out


FailureHook = Callable[[str, str], Awaitable[None]]


class Notifier:
    """Sends one alert event to a rule's channels. ``close`` cancels deliveries still
    under way; ``idle`` waits for them (tests)."""

    def __init__(self, *, on_failure: FailureHook | None = None, timeout_s: float = TIMEOUT_S,
                 tries: int = TRIES, backoff_s: Sequence[float] = BACKOFF_S) -> None:
        self.on_failure = on_failure
        self.timeout_s = timeout_s
        self.tries = tries
        self.backoff_s = tuple(backoff_s)
        self._session: aiohttp.ClientSession | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def send(self, event: Mapping[str, Any], rule: Mapping[str, Any],
             channels: Sequence[Mapping[str, Any]]) -> None:
        """Deliver ``event`` (the ``system_alert`` data) now; never blocks, never raises."""
        firing = event["state"] == "firing"
        for channel in channels:
            if channel.get("type") == "log":
                log.log(logging.WARNING if firing else logging.INFO, "alert %s: %s",
                        event["state"], event["message"])
            elif channel.get("type") == "webhook":
                body = {"alert": dict(event), "state": event["state"], "rule": dict(rule),
                        "timestamp": event["timestamp"]}
                task = asyncio.ensure_future(self._deliver(
                    str(event["alert_id"]), str(event["event_id"]), channel, body))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    async def _deliver(self, alert_id: str, event_id: str, channel: Mapping[str, Any],
                       body: dict[str, Any]) -> None:
        url = str(channel["url"])
        error = await self.post(url, dict(channel.get("headers") or {}), body)
        if error is None:
            return
        note = f"webhook {urlsplit(url).netloc} failed after {self.tries} tries: {error}"
        log.warning("alert %s: %s", alert_id, note)
        if self.on_failure is not None:
            try:
                await self.on_failure(event_id, note)
            except Exception:  # a store hiccup must not end the notifier
                log.exception("alert %s: could not record the failed delivery", alert_id)

    async def post(self, url: str, headers: dict[str, str], body: dict[str, Any]) -> str | None:
        """POST ``body`` with retries; None when delivered, else why the last try failed."""
        error = "not tried"
        for attempt in range(self.tries):
            if attempt:
                await asyncio.sleep(self.backoff_s[min(attempt - 1, len(self.backoff_s) - 1)])
            try:
                async with self.session().post(
                    url, json=body, headers=headers, allow_redirects=False,
                    timeout=aiohttp.ClientTimeout(total=self.timeout_s),
                ) as resp:
                    await resp.content.read(READ_CAP_BYTES)
                    if 200 <= resp.status < 300:
                        return None
                    error = f"HTTP {resp.status}"
                    if resp.status < 500 and resp.status != 429:
                        return error  # the receiver refuses it: trying again won't help
            except TimeoutError:
                error = f"no answer within {self.timeout_s:g} s"
            except aiohttp.ClientError as exc:
                error = f"{type(exc).__name__}: {exc}"
        return error

    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(trust_env=False)
        return self._session

    async def idle(self) -> None:
        """Wait until every delivery under way has finished."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*list(self._tasks), return_exceptions=True)
        if self._session is not None:
            await self._session.close()
