"""What one request went through, filled in along the request path and turned into a
``RequestRecord`` at its end."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from modelfleet.errors import FleetError
from modelfleet.observability.records import RequestRecord

if TYPE_CHECKING:
    from modelfleet.auth.principal import Principal
    from modelfleet.fleet.model import Instance
    from modelfleet.gateway.relay import Outcome


class Trace:
    __slots__ = ("model", "route", "started", "status", "error_type", "instance", "role",
                 "key_id", "queue_s", "first_token_at", "text_events", "prompt_tokens",
                 "completion_tokens", "stream")

    def __init__(self, model: str, route: str, started: float | None = None):
        self.model = model
        self.route = route
        self.started = time.monotonic() if started is None else started
        self.status = 0
        self.error_type: str | None = None
        self.instance = ""
        self.role = "pd"
        self.key_id: str | None = None
        self.queue_s = 0.0
        self.first_token_at: float | None = None
        self.text_events = 0
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.stream = False

    def admitted(self, queued_s: float, principal: Principal | None) -> None:
        self.queue_s = queued_s
        self.key_id = principal.key_id if principal else None

    def reached(self, model: str, instance: Instance) -> None:
        """An attempt on ``instance`` of ``model`` (a fallback may differ from the first)."""
        self.model = model
        self.instance = instance.base_url
        self.role = instance.role

    def answered(self, outcome: Outcome) -> None:
        self.status = outcome.status
        self.stream = outcome.streamed
        self.first_token_at = outcome.first_token_at
        self.text_events = outcome.text_events
        if outcome.error is not None:
            self.error_type = outcome.error.code
        self._usage(outcome.usage)

    def answered_json(self, usage: dict[str, Any] | None) -> None:
        self.status = 200
        self._usage(usage)

    def fail(self, exc: FleetError) -> None:
        self.status = exc.status
        self.error_type = exc.code

    def _usage(self, usage: dict[str, Any] | None) -> None:
        if usage:
            self.prompt_tokens = _count(usage.get("prompt_tokens"))
            self.completion_tokens = _count(usage.get("completion_tokens"))

    def record(self, stage: bool = False) -> RequestRecord:
        """The request's record; ``stage``: one step of a disaggregated request."""
        end = time.monotonic()
        ttft = tpot = None
        completion = self.completion_tokens or self.text_events
        if self.first_token_at is not None:
            ttft = self.first_token_at - self.started
            if completion > 1:
                tpot = (end - self.first_token_at) / (completion - 1)
        return RequestRecord(
            model=self.model, route=self.route, status=self.status or 500,
            e2e_s=end - self.started, instance=self.instance, role=self.role,
            key_id=self.key_id, queue_s=self.queue_s, ttft_s=ttft, tpot_s=tpot,
            prompt_tokens=self.prompt_tokens, completion_tokens=completion,
            error_type=self.error_type, stream=self.stream, stage=stage)


def _count(value: object) -> int:
    return value if isinstance(value, int) and value > 0 else 0
