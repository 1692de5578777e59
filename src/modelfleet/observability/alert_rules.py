"""The alert condition language: what a rule watches, and when it is broken.

    condition := metric [ "{" "model" "=" string "}" ] op quantity [ "for" duration ]
    op        := ">" | ">=" | "<" | "<=" | "==" | "!="
    quantity  := number [ "%" | "ms" | "s" ]
    duration  := number ( "ms" | "s" | "m" | "h" )

Examples: ``gpu_utilization > 90`` (seed 002), ``ttft_p95{model="qwen"} > 2``,
``error_rate > 5% for 2m``, ``latency_p95 >= 1500ms``.

A hand-written tokenizer and recursive-descent parser; nothing is ever evaluated as
code. Units are checked against the metric's: ``%`` on a percent metric is the number
as written and on a ratio (``error_rate``) divides by 100; ``ms``/``s`` only fit time
metrics and give seconds. Every error is an ``InvalidRequestError`` (422, ``param`` =
``condition``) naming the position and what was expected there.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Literal, NoReturn

from modelfleet.errors import InvalidRequestError

MAX_CONDITION_CHARS = 200
MAX_FOR_S = 7 * 86400
OPS = (">", ">=", "<", "<=", "==", "!=")

Unit = Literal["percent", "celsius", "ratio", "seconds", "count"]


@dataclass(frozen=True, slots=True)
class Metric:
    unit: Unit
    per_model: bool  # whether the snapshot has it for each model, not only for the host


_HOST = False
_MODEL = True
METRICS: dict[str, Metric] = {
    "gpu_utilization": Metric("percent", _HOST),
    "gpu_temperature": Metric("celsius", _HOST),
    "gpu_memory_percent": Metric("percent", _HOST),
    "cpu_percent": Metric("percent", _HOST),
    "memory_percent": Metric("percent", _HOST),
    "disk_percent": Metric("percent", _HOST),
    "error_rate": Metric("ratio", _MODEL),
    "ttft_p50": Metric("seconds", _MODEL),
    "ttft_p95": Metric("seconds", _MODEL),
    "ttft_p99": Metric("seconds", _MODEL),
    "latency_p50": Metric("seconds", _MODEL),
    "latency_p95": Metric("seconds", _MODEL),
    "latency_p99": Metric("seconds", _MODEL),
    "tpot_mean": Metric("seconds", _MODEL),
    "requests_per_second": Metric("count", _MODEL),
    "queue_waiting": Metric("count", _MODEL),
    "running_requests": Metric("count", _MODEL),
}

_UNIT_WORDS = {"percent": "%", "celsius": "°C", "ratio": "a ratio from 0 to 1",
               "seconds": "seconds", "count": "a count"}
_DURATION_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


@dataclass(frozen=True, slots=True)
class Condition:
    """A parsed condition; ``threshold`` is in the metric's own unit (seconds, %, ratio)."""

    metric: str
    model: str | None
    op: str
    threshold: float
    for_s: float = 0.0

    def holds(self, value: float) -> bool:
        t = self.threshold
        return {">": value > t, ">=": value >= t, "<": value < t, "<=": value <= t,
                "==": value == t, "!=": value != t}[self.op]

    def text(self) -> str:
        """The condition in canonical form (units resolved, seconds for ``for``)."""
        quote = "'" if self.model is not None and '"' in self.model else '"'
        scope = f"{{model={quote}{self.model}{quote}}}" if self.model is not None else ""
        held = f" for {self.for_s:g}s" if self.for_s else ""
        return f"{self.metric}{scope} {self.op} {self.threshold:g}{held}"


@dataclass(frozen=True, slots=True)
class _Token:
    kind: Literal["name", "number", "op", "string", "punct", "other", "end"]
    text: str
    pos: int


class _Tokens:
    """Reads one token at a time, so an error is reported where the parser stands."""

    def __init__(self, source: str):
        self.source = source
        self.pos = 0
        self.peeked: _Token | None = None

    def peek(self) -> _Token:
        if self.peeked is None:
            self.peeked = self._scan()
        return self.peeked

    def next(self) -> _Token:
        token = self.peek()
        self.peeked = None
        return token

    def _scan(self) -> _Token:
        src, n = self.source, len(self.source)
        while self.pos < n and src[self.pos] in " \t":
            self.pos += 1
        start = self.pos
        if start >= n:
            return _Token("end", "", start)
        ch = src[start]
        if ch.isascii() and (ch.isalpha() or ch == "_"):
            end = start
            while end < n and src[end].isascii() and (src[end].isalnum() or src[end] == "_"):
                end += 1
            return self._emit("name", end)
        if ch.isascii() and (ch.isdigit() or ch == "."):
            end = start
            while end < n and src[end].isascii() and src[end].isdigit():
                end += 1
            if end < n and src[end] == ".":
                end += 1
                while end < n and src[end].isascii() and src[end].isdigit():
                    end += 1
            return self._emit("other" if end == start + 1 and ch == "." else "number", end)
        if ch in "<>=!":
            two = src[start:start + 2]
            if two in (">=", "<=", "==", "!="):
                return self._emit("op", start + 2)
            if ch in "<>":
                return self._emit("op", start + 1)
            return self._emit("punct" if ch == "=" else "other", start + 1)
        if ch in "{},%":
            return self._emit("punct", start + 1)
        if ch in "\"'":
            end = src.find(ch, start + 1)
            if end < 0:
                raise _error(src, n, f"a closing {ch}", found="the end")
            return self._emit("string", end + 1)
        # Anything else is one token the parser refuses, saying what it expected there.
        return self._emit("other", start + 1)

    def _emit(self, kind: Literal["name", "number", "op", "string", "punct", "other"],
              end: int) -> _Token:
        token = _Token(kind, self.source[self.pos:end], self.pos)
        self.pos = end
        return token


def _found(token: _Token) -> str:
    return "the end" if token.kind == "end" else repr(token.text)


def _error(source: str, pos: int, expected: str, *, found: str | None = None,
           message: str | None = None) -> InvalidRequestError:
    if found is None:
        found = repr(source[pos]) if pos < len(source) else "the end"
    text = (f"{message} (at position {pos})" if message
            else f"expected {expected} at position {pos}, found {found}")
    err = InvalidRequestError(f"condition {source!r}: {text}", param="condition",
                              details={"position": pos, "expected": expected})
    err.status = 422
    return err


class _Parser:
    def __init__(self, source: str):
        self.source = source
        self.tokens = _Tokens(source)

    def fail(self, token: _Token, expected: str, message: str | None = None) -> NoReturn:
        raise _error(self.source, token.pos, expected, found=_found(token), message=message)

    def condition(self) -> Condition:
        metric = self.metric()
        model = self.scope(metric) if self.tokens.peek().text == "{" else None
        op = self.tokens.next()
        if op.kind != "op":
            self.fail(op, "an operator (> >= < <= == !=)")
        threshold = self.quantity(metric)
        for_s = 0.0
        word = self.tokens.peek()
        held = word.kind == "name" and word.text == "for"
        if held:
            self.tokens.next()
            for_s = self.duration()
        end = self.tokens.next()
        if end.kind != "end":
            self.fail(end, "the end of the condition" if held else "'for <duration>' or the end")
        return Condition(metric, model, op.text, threshold, for_s)

    def metric(self) -> str:
        token = self.tokens.next()
        if token.kind != "name":
            self.fail(token, "a metric name")
        if token.text not in METRICS:
            close = difflib.get_close_matches(token.text, list(METRICS), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            self.fail(token, "a metric name", f"unknown metric {token.text!r}{hint}; "
                      f"known metrics: {', '.join(METRICS)}")
        return token.text

    def scope(self, metric: str) -> str:
        brace = self.tokens.next()
        if not METRICS[metric].per_model:
            self.fail(brace, "an operator", f"{metric} is measured for the whole host, "
                      "not per model: it takes no {model=...}")
        label = self.tokens.next()
        if label.kind != "name" or label.text != "model":
            self.fail(label, "the label 'model'")
        self.expect("=", "'='")
        value = self.tokens.next()
        if value.kind != "string":
            self.fail(value, 'a quoted model name, e.g. "qwen"')
        name = value.text[1:-1]
        if not name or name.startswith("/") or any(c.isspace() for c in name):
            self.fail(value, "a model name", f"{value.text} is not a model name")
        self.expect("}", "'}'")
        return name

    def expect(self, text: str, expected: str) -> None:
        token = self.tokens.next()
        if token.text != text:
            self.fail(token, expected)

    def number(self, what: str) -> tuple[float, _Token]:
        token = self.tokens.next()
        if token.kind != "number":
            self.fail(token, what)
        return float(token.text), token

    def quantity(self, metric: str) -> float:
        value, token = self.number("a number")
        unit = METRICS[metric].unit
        after = self.tokens.peek()
        suffix = after.text if after.text == "%" or (
            after.kind == "name" and after.text in ("ms", "s")) else None
        if suffix is None:
            if after.kind != "end" and after.text != "for":
                self.fail(after, "a unit (%, ms, s), 'for' or the end")
            return self.in_range(metric, value, token)
        self.tokens.next()
        if suffix == "%" and unit in ("percent", "ratio"):
            return self.in_range(metric, value if unit == "percent" else value / 100, token)
        if suffix in ("ms", "s") and unit == "seconds":
            return value / 1000 if suffix == "ms" else value
        self.fail(after, f"a number in {_UNIT_WORDS[unit]}",
                  f"{metric} is {_UNIT_WORDS[unit]}: the unit {suffix!r} does not fit it")

    def in_range(self, metric: str, value: float, token: _Token) -> float:
        # A threshold its metric can never reach is a mistake (5 for 5 %), not a rule.
        unit = METRICS[metric].unit
        if unit == "ratio" and value > 1:
            self.fail(token, "a ratio from 0 to 1", f"{metric} is a ratio from 0 to 1: "
                      f"{token.text} is out of range (write {token.text}% for a percentage)")
        if unit == "percent" and value > 100:
            self.fail(token, "a percentage from 0 to 100", f"{metric} is a percentage: "
                      f"{token.text} is over 100")
        return value

    def duration(self) -> float:
        value, token = self.number("a duration, e.g. 30s or 2m")
        unit = self.tokens.next()
        if unit.kind != "name" or unit.text not in _DURATION_S:
            self.fail(unit, "a duration unit (ms, s, m, h)")
        seconds = value * _DURATION_S[unit.text]
        if seconds > MAX_FOR_S:
            self.fail(token, "a shorter duration", f"'for' is at most {MAX_FOR_S // 86400} days")
        return seconds


def parse_condition(source: str) -> Condition:
    """Parse a condition; InvalidRequestError (422) with the position if it is not one."""
    if not isinstance(source, str):
        raise _error("", 0, "a string", found=type(source).__name__)
    if len(source) > MAX_CONDITION_CHARS:
        err = InvalidRequestError(
            f"condition is {len(source)} characters long; at most {MAX_CONDITION_CHARS}",
            param="condition", details={"position": MAX_CONDITION_CHARS,
                                        "expected": "a shorter condition"})
        err.status = 422
        raise err
    return _Parser(source.strip()).condition()
