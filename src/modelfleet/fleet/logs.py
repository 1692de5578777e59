"""Engine output: a bounded in-memory ring plus a rotating file under data_dir.

The ring serves the logs APIs fast; the file survives a gateway restart and
is read back into the ring when the model's log is opened again. Both are
bounded: the ring by line count, the file by size and backup count.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

MAX_LINE = 4096


@dataclass(slots=True)
class LogLine:
    timestamp: float
    message: str
    stream: str = "stdout"


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
        line = LogLine(time.time(), message[:MAX_LINE], stream)
        self.ring.append(line)
        self._file.write(f"{line.timestamp:.3f} {line.message}\n")
        self._file.flush()
        if self._file.tell() > self.max_bytes:
            self._rotate()
        for queue in self._subscribers:
            if queue.qsize() < 10_000:  # a stalled reader never grows memory without bound
                queue.put_nowait(line)

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

    def close(self) -> None:
        self._file.close()
