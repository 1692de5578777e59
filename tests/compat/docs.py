"""Read the API documents in this folder: endpoints, their documented responses, and the
curl examples, so that tests can replay the examples against a real gateway.

The documents are those of the services whose APIs modelfleet serves, kept verbatim.
An endpoint is declared by a line ``**接口**: `METHOD /path``` or by an ``http`` block;
a ``json`` block whose label line mentions 响应 (response) is one of its documented
responses, and an unlabelled block of ``data:`` lines is its documented stream.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent

_FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)
_DECLARED = re.compile(r"\*\*接口\*\*:\s*`(GET|POST|PUT|DELETE)\s+(\S+)`")
_HTTP = re.compile(r"^(GET|POST|PUT|DELETE)\s+(\S+)")


@dataclass
class Endpoint:
    method: str
    path: str  # with {placeholders}
    requests: list[Any] = field(default_factory=list)  # documented request bodies
    responses: list[Any] = field(default_factory=list)
    stream: list[Any] = field(default_factory=list)  # the documented SSE data objects

    def matches(self, method: str, path: str) -> bool:
        pattern = re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(self.path))
        return method == self.method and re.fullmatch(pattern, path) is not None


@dataclass
class Curl:
    method: str
    url: str
    headers: dict[str, str]
    data: str | None
    stream: bool  # -N: the output is followed as it comes


def _json(text: str) -> Any:
    """A documented JSON body; ``[0.1, 0.2, ...]`` elisions are dropped."""
    return json.loads(re.sub(r",\s*\.\.\.", "", text))


def endpoints(text: str) -> list[Endpoint]:
    out: list[Endpoint] = []
    current: Endpoint | None = None
    pos = 0
    for m in _FENCE.finditer(text):
        before = text[pos:m.start()]
        pos = m.end()
        for line in before.splitlines():
            if line.startswith("#"):  # a new section: nothing declared in it yet
                current = None
            d = _DECLARED.search(line)
            if d:
                current = Endpoint(d.group(1), d.group(2))
                out.append(current)
        lang, body = m.group(1), m.group(2)
        if lang == "http":
            h = _HTTP.match(body.strip())
            if h:
                current = Endpoint(h.group(1), h.group(2))
                out.append(current)
            continue
        if current is None:
            continue
        label = before.strip().splitlines()[-1] if before.strip() else ""
        if lang == "json" and "响应" in label:
            current.responses.append(_json(body))
        elif lang == "json" and "请求" in label:
            current.requests.append(_json(body))
        elif lang == "" and body.lstrip().startswith("data:"):
            current.stream = [json.loads(line[5:]) for line in body.splitlines()
                              if line.startswith("data:") and line[5:].strip() != "[DONE]"]
    return _merge(out)


def _merge(found: list[Endpoint]) -> list[Endpoint]:
    """One endpoint per method and path (a document may declare one twice)."""
    merged: dict[tuple[str, str], Endpoint] = {}
    for e in found:
        have = merged.setdefault((e.method, e.path), Endpoint(e.method, e.path))
        have.requests += e.requests
        have.responses += e.responses
        have.stream = have.stream or e.stream
    return list(merged.values())


def curls(text: str) -> list[Curl]:
    """Every curl command of the ``bash`` blocks, in document order."""
    out = []
    for m in _FENCE.finditer(text):
        if m.group(1) != "bash":
            continue
        lines = [line for line in m.group(2).replace("\\\n", " ").splitlines()
                 if not line.lstrip().startswith("#")]
        command: list[str] = []
        for line in [*lines, "curl"]:  # a sentinel ends the last command
            if line.lstrip().startswith("curl") and command:
                out.append(_parse(shlex.split("\n".join(command))[1:]))
                command = []
            if line.lstrip().startswith("curl") and line.strip() != "curl" or command:
                command.append(line)
    return out


def _parse(args: list[str]) -> Curl:
    method, url, data, stream = "GET", "", None, False
    headers: dict[str, str] = {}
    it = iter(args)
    for arg in it:
        if arg == "-X":
            method = next(it)
        elif arg == "-H":
            key, _, value = next(it).partition(":")
            headers[key.strip()] = value.strip()
        elif arg in ("-d", "--data"):
            data = next(it)
            if method == "GET":
                method = "POST"
        elif arg == "-N":
            stream = True
        else:
            url = arg
    return Curl(method, url, headers, data, stream)


# Free-form objects: their keys are the example's data (engine settings), not a shape.
FREE_FORM = ("config",)


def covers(documented: Any, ours: Any, where: str = "") -> list[str]:
    """What of ``documented``'s shape ``ours`` lacks: missing keys, a list for an object…
    Values are not compared (ids, times and numbers differ from any example)."""
    if isinstance(documented, dict):
        if not isinstance(ours, dict):
            return [f"{where or '/'}: expected an object, got {type(ours).__name__}"]
        if where.rpartition("/")[2] in FREE_FORM:
            return []
        gaps = []
        for key, value in documented.items():
            if key not in ours:
                gaps.append(f"{where}/{key}: missing")
            else:
                gaps += covers(value, ours[key], f"{where}/{key}")
        return gaps
    if isinstance(documented, list):
        if not isinstance(ours, list):
            return [f"{where}: expected a list, got {type(ours).__name__}"]
        if documented and ours:
            return covers(documented[0], ours[0], f"{where}[0]")
    return []


def load(name: str) -> str:
    return (HERE / name).read_text()
