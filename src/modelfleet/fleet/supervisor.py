"""Engine processes: launch from an argument list, capture output, wait, stop.

Each engine runs in its own session (process group) so a stop reaches the
workers it forks. Engines must not outlive the gateway, even a gateway killed
with SIGKILL: on Linux the child asks the kernel for SIGTERM when its parent
dies (PR_SET_PDEATHSIG, kept across exec), and our own engines also watch
``MODELFLEET_PARENT_PID``. Output (stdout and stderr together) goes line by
line into the model's ``ModelLog``.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import socket
import sys
import time
from collections.abc import Sequence

import aiohttp

from modelfleet.errors import ModelStartError
from modelfleet.fleet.logs import ModelLog

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # runs in the child between fork and exec
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def free_port(host: str = "127.0.0.1") -> int:
    """A port nobody listens on right now (the engine binds it a moment later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class EngineProcess:
    """One running engine process and the task that pumps its output."""

    def __init__(self, argv: Sequence[str], env: dict[str, str], log: ModelLog):
        self.argv = list(argv)
        self.env = env
        self.log = log
        self.proc: asyncio.subprocess.Process | None = None
        self._pump: asyncio.Task[None] | None = None
        self.started_at = 0.0

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    @property
    def returncode(self) -> int | None:
        return self.proc.returncode if self.proc else None

    async def spawn(self) -> None:
        env = dict(self.env)
        env["MODELFLEET_PARENT_PID"] = str(os.getpid())
        env.setdefault("PYTHONUNBUFFERED", "1")
        self.log.append(f"[modelfleet] launching: {' '.join(self.argv)}")
        try:
            self.proc = await asyncio.create_subprocess_exec(
                *self.argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                env=env,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        except OSError as exc:
            self.log.append(f"[modelfleet] launch failed: {exc}")
            raise ModelStartError(f"cannot launch engine {self.argv[0]!r}: {exc.strerror}") from exc
        self.started_at = time.monotonic()
        self.log.append(f"[modelfleet] engine pid {self.proc.pid}")
        self._pump = asyncio.create_task(self._pump_output())

    async def _pump_output(self) -> None:
        assert self.proc and self.proc.stdout
        stream = self.proc.stdout
        while True:
            try:
                raw = await stream.readline()
            except ValueError:  # a line longer than the stream limit: take what is there
                raw = await stream.read(65536)
            if not raw:
                break
            self.log.append(raw.decode("utf-8", "replace").rstrip("\r\n"))

    async def wait_ready(
        self, url: str, timeout: float, session: aiohttp.ClientSession, interval: float = 0.2
    ) -> None:
        """Poll ``url`` until it answers 200; raise ModelStartError on exit or timeout."""
        deadline = time.monotonic() + timeout
        probe = aiohttp.ClientTimeout(total=2)
        while True:
            if self.returncode is not None:
                raise ModelStartError(
                    f"engine exited with code {self.returncode} while starting",
                    details={"last_log": [line.message for line in self.log.tail(10)]},
                )
            with contextlib.suppress(aiohttp.ClientError, asyncio.TimeoutError):
                async with session.get(url, timeout=probe) as resp:
                    if resp.status == 200:
                        return
            if time.monotonic() > deadline:
                await self.stop(grace=2)
                raise ModelStartError(f"engine not ready after {timeout:.0f}s")
            await asyncio.sleep(interval)

    async def wait(self) -> int:
        assert self.proc is not None
        code = await self.proc.wait()
        if self._pump:
            with contextlib.suppress(asyncio.CancelledError):
                await self._pump
        return code

    def _signal_group(self, sig: signal.Signals) -> None:
        if self.proc is None or self.proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, sig)

    async def stop(self, grace: float = 10.0) -> int | None:
        """SIGTERM the process group, then SIGKILL after ``grace`` seconds."""
        if self.proc is None:
            return None
        if self.proc.returncode is None:
            self._signal_group(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), grace)
            except TimeoutError:
                self.log.append(f"[modelfleet] no exit after {grace:.0f}s; killing")
                self._signal_group(signal.SIGKILL)
                await self.proc.wait()
        # Workers the engine forked may still hold the group: make sure they go too.
        self._signal_group(signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        if self._pump:
            with contextlib.suppress(asyncio.CancelledError):
                await self._pump
        return self.proc.returncode
