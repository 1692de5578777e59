"""Keep secrets out of every log line, at every level.

``install`` wraps the logging record factory, so each record is redacted once
when it is made (only records that will be emitted are made), whichever logger
or handler it goes through, ours or a library's. ``redact`` is also applied to
engine output before it is stored in a model's log. Secrets are recognised by
shape (API keys, JWTs, bearer headers, password and key fields, ``--api-key``
flags) and by value (the configured admin password and JWT secret).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable

MASK = "***"
_PATTERNS = [
    (re.compile(r"mf-[A-Za-z0-9_-]{8,}"), "mf-" + MASK),
    (re.compile(r"eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*"), "eyJ" + MASK),
    (re.compile(r"(?i)\b(bearer)\s+[^\s'\",]+"), r"\1 " + MASK),
    (re.compile(r"(?i)(--(?:api-key|api_key|password|token)[= ])\S+"), r"\1" + MASK),
    (re.compile(r"(?i)([\"']?(?:password|passwd|api_key|apikey|secret|token|access_token)"
                r"[\"']?\s*[:=]\s*)([\"'])(.*?)\2"), r"\1\2" + MASK + r"\2"),
    (re.compile(r"(?i)\b(password|api_key|secret|token)=([^\s&,;]+)"), r"\1=" + MASK),
]
_literals: set[str] = set()


def add_secrets(values: Iterable[str | None]) -> None:
    """Redact these exact values too (configured passwords and signing secrets)."""
    _literals.update(v for v in values if v and len(v) >= 4)


def redact(text: str) -> str:
    for literal in _literals:
        if literal in text:
            text = text.replace(literal, MASK)
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def install() -> None:
    """Redact every log record from now on (idempotent)."""
    factory = logging.getLogRecordFactory()
    if getattr(factory, "redacting", False):
        return

    def make(*args: object, **kwargs: object) -> logging.LogRecord:
        record = factory(*args, **kwargs)
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a bad format string: leave it to logging
            return record
        record.msg, record.args = redact(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
        return record

    make.redacting = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(make)
