"""Engine output: a bounded in-memory ring plus a rotating file under data_dir.

The ring serves the logs APIs fast; the file survives a gateway restart and
is read back into the ring when the model's log is opened again. Both are
bounded: the ring by line count, the file by size and backup count.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from modelfleet.auth.redact import redact

MAX_LINE = 4096

_ERROR_MARKERS = ("error", "traceback", "exception", "critical", "fatal")
_WARNING_MARKERS = ("warn",)


def infer_level(message: str) -> str:
    """The level a free-text engine line most likely has: ERROR, WARNING or INFO."""
    lowered = message.lower()
    if any(marker in lowered for marker in _ERROR_MARKERS):
        return "ERROR"
    if any(marker in lowered for marker in _WARNING_MARKERS):
        return "WARNING"
    return "INFO"


@dataclass(slots=True)
class LogLine:
    timestamp: float
    message: str
    stream: str = "stdout"

    @property
    def level(self) -> str:
        return infer_level(self.message)


# Put on every subscriber's queue when the log closes (model removed or gateway
# shutting down): a follower seeing it knows no more lines will come.
CLOSED = LogLine(0.0, "", "closed")


def _stamp_of(raw: str) -> float:
    """The timestamp a file line starts with; -inf when it has none."""
    stamp, _, _ = raw.partition(" ")
    try:
        return float(stamp)
    except ValueError:
        return -math.inf


class ModelLog:
    """The log of one model: append lines, read the tail, follow new lines."""

    def __init__(
        self,
        path: Path,
        *,
        ring_lines: int = 2000,
        max_bytes: int = 5 * 1024 * 1024,
        backups: int = 2,
    ):
        self.path = path
        self.max_bytes = max_bytes
        self.backups = backups
        self.ring: deque[LogLine] = deque(maxlen=ring_lines)
        self._subscribers: set[asyncio.Queue[LogLine]] = set()
        self.closed = False
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._load_tail()
        self._file = self.path.open("a", encoding="utf-8", errors="replace")

    def _load_tail(self) -> None:
        """Refill the ring from the file a previous run left."""
        if not self.path.exists():
            return
        with self.path.open("r", encoding="utf-8", errors="replace") as f:
            for raw in deque(f, maxlen=self.ring.maxlen):
                stamp, _, message = raw.rstrip("\n").partition(" ")
                try:
                    self.ring.append(LogLine(float(stamp), message))
                except ValueError:
                    self.ring.append(LogLine(time.time(), raw.rstrip("\n")))

    def append(self, message: str, stream: str = "stdout") -> None:
        line = LogLine(time.time(), redact(message[:MAX_LINE]), stream)
        self.ring.append(line)
        self._file.write(f"{line.timestamp:.3f} {line.message}\n")
        self._file.flush()
        if self._file.tell() > self.max_bytes:
            self._rotate()
        for queue in self._subscribers:
            if queue.qsize() < 10_000:  # a stalled reader never grows memory without bound
                queue.put_nowait(line)

    def _files(self) -> list[Path]:
        """The live file and its rotated backups, newest first."""
        return [self.path] + [
            self.path.with_suffix(self.path.suffix + f".{i}") for i in range(1, self.backups + 1)
        ]

    def clear(self, keep_minutes: float = 0) -> int:
        """Drop lines older than ``keep_minutes`` (0: all of them) from the ring and the
        files; return how many were deleted (the files hold at least what the ring does)."""
        cutoff = time.time() - keep_minutes * 60 if keep_minutes > 0 else math.inf
        before = len(self.ring)
        kept = [line for line in self.ring if line.timestamp >= cutoff]
        self.ring.clear()
        self.ring.extend(kept)
        ring_deleted = before - len(kept)
        file_deleted = 0
        self._file.close()
        try:
            for path in self._files():
                if not path.exists():
                    continue
                with path.open("r", encoding="utf-8", errors="replace") as f:
                    lines = f.readlines()
                survivors = [raw for raw in lines if _stamp_of(raw) >= cutoff]
                file_deleted += len(lines) - len(survivors)
                if path != self.path and not survivors:
                    path.unlink()
                    continue
                if len(survivors) != len(lines):
                    tmp = path.with_suffix(path.suffix + ".tmp")
                    tmp.write_text("".join(survivors), encoding="utf-8")
                    tmp.replace(path)
        finally:
            self._file = self.path.open("a", encoding="utf-8", errors="replace")
        return max(ring_deleted, file_deleted)

    @property
    def subscriber_count(self) -> int:
        return len(self._subscribers)

    def _rotate(self) -> None:
        self._file.close()
        for i in range(self.backups, 0, -1):
            src = self.path.with_suffix(self.path.suffix + (f".{i - 1}" if i > 1 else ""))
            if src.exists():
                src.replace(self.path.with_suffix(self.path.suffix + f".{i}"))
        self._file = self.path.open("w", encoding="utf-8")

    def tail(self, lines: int = 100) -> list[LogLine]:
        if lines <= 0:
            return []
        return list(self.ring)[-lines:]

    def subscribe(self) -> asyncio.Queue[LogLine]:
        queue: asyncio.Queue[LogLine] = asyncio.Queue()
        self._subscribers.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[LogLine]) -> None:
        self._subscribers.discard(queue)

    def end_streams(self) -> None:
        """Tell every follower that its stream ends now (the gateway is shutting down)."""
        for queue in self._subscribers:
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait(CLOSED)

    def close(self) -> None:
        """Close the file and tell every follower that no more lines will come."""
        if self.closed:
            return
        self.closed = True
        self._file.close()
        self.end_streams()
