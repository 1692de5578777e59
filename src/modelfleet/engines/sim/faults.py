"""Injected faults: errors at a rate, stalls, a crash after N requests."""

from __future__ import annotations

import argparse
import asyncio
import os
import random

from aiohttp import web


class Faults:
    """What ``--error-rate/--error-status/--stall-*/--crash-after/--seed`` ask for.

    ``before`` runs first for every generation request, before it takes a slot:
    a stall there looks like an engine slow to answer its first byte.
    """

    def __init__(self, args: argparse.Namespace) -> None:
        self.error_rate: float = args.error_rate
        self.error_status: int = args.error_status
        self.stall_first_byte_s: float = args.stall_first_byte_s
        self.stall_mid_stream_s: float = args.stall_mid_stream_s
        self.crash_after: int = args.crash_after
        self.random = random.Random(args.seed)
        self.served = 0

    async def before(self) -> web.Response | None:
        """The fault to answer with, if any; may stall or exit the process."""
        self.served += 1
        if self.crash_after and self.served > self.crash_after:
            print(f"crashing after {self.crash_after} requests (fault injection)", flush=True)
            os._exit(70)
        if self.error_rate and self.random.random() < self.error_rate:
            return web.json_response({"error": {
                "message": "injected fault", "type": "server_error", "code": "INJECTED_FAULT",
                "param": None}}, status=self.error_status, headers={"Retry-After": "1"})
        if self.stall_first_byte_s:
            await asyncio.sleep(self.stall_first_byte_s)
        return None
