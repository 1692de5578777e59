"""Typed readers for the fields of a JSON request body.

Each reader returns the field's value (or the default when it is absent or null) and
raises :class:`~modelfleet.errors.InvalidRequestError` naming the field (``param``)
when it has the wrong type or is out of range. JSON booleans are never accepted as
numbers (Python's ``bool`` is an ``int``), and integral floats are not accepted where an
integer is required, as OpenAI's own validation does.
"""

from __future__ import annotations

import math
from typing import Any

from modelfleet.errors import InvalidRequestError

Body = dict[str, Any]


def bad(message: str, param: str | None = None) -> InvalidRequestError:
    """The 400 for an invalid parameter, with its name in ``param``."""
    return InvalidRequestError(message, param=param)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def opt_int(
    body: Body,
    name: str,
    default: int | None = None,
    *,
    lo: int | None = None,
    hi: int | None = None,
) -> int | None:
    """An integer field within ``[lo, hi]``."""
    value = body.get(name)
    if value is None:
        return default
    if not _is_int(value):
        raise bad(f"'{name}' must be an integer, got {type(value).__name__}", name)
    if lo is not None and value < lo:
        raise bad(f"'{name}' must be >= {lo}, got {value}", name)
    if hi is not None and value > hi:
        raise bad(f"'{name}' must be <= {hi}, got {value}", name)
    return int(value)


def opt_float(
    body: Body, name: str, default: float, *, lo: float, hi: float, lo_open: bool = False
) -> float:
    """A finite number within ``[lo, hi]`` (``(lo, hi]`` when ``lo_open``)."""
    value = body.get(name)
    if value is None:
        return default
    if not _is_number(value) or not math.isfinite(value):
        raise bad(f"'{name}' must be a number, got {type(value).__name__}", name)
    if value < lo or (lo_open and value == lo) or value > hi:
        low = "(" if lo_open else "["
        raise bad(f"'{name}' must be in {low}{lo}, {hi}], got {value}", name)
    return float(value)


def opt_bool(body: Body, name: str, default: bool) -> bool:
    """A boolean field."""
    value = body.get(name)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise bad(f"'{name}' must be a boolean, got {type(value).__name__}", name)
    return value


def opt_str(body: Body, name: str, default: str | None = None) -> str | None:
    """A string field."""
    value = body.get(name)
    if value is None:
        return default
    if not isinstance(value, str):
        raise bad(f"'{name}' must be a string, got {type(value).__name__}", name)
    return value


def opt_dict(body: Body, name: str) -> dict[str, Any]:
    """An object field (empty when absent)."""
    value = body.get(name)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise bad(f"'{name}' must be an object, got {type(value).__name__}", name)
    return value


def str_list(value: Any, name: str, *, max_items: int, allow_empty_items: bool = True) -> list[str]:
    """A string or a list of strings, as a list (``stop``, ``text_2``...)."""
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(v, str) for v in items):
        raise bad(f"'{name}' must be a string or a list of strings", name)
    if len(items) > max_items:
        raise bad(f"'{name}' may hold at most {max_items} items, got {len(items)}", name)
    if not allow_empty_items and any(v == "" for v in items):
        raise bad(f"'{name}' may not hold empty strings", name)
    return list(items)


def int_list(value: Any, name: str, *, lo: int = 0, hi: int | None = None) -> list[int]:
    """A list of integers (token ids) within ``[lo, hi]``."""
    if not isinstance(value, list) or not all(_is_int(v) for v in value):
        raise bad(f"'{name}' must be a list of integers", name)
    for v in value:
        if v < lo or (hi is not None and v > hi):
            raise bad(f"'{name}' holds {v}, outside [{lo}, {hi}]", name)
    return list(value)


def text_or_tokens(value: Any, name: str, *, max_items: int = 2048) -> list[str | list[int]]:
    """OpenAI's prompt/input shape: ``str | list[str] | list[int] | list[list[int]]``,
    as a non-empty list of texts and token-id lists."""
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list) or not value:
        raise bad(f"'{name}' must be a string, a list of strings or of token ids, non-empty", name)
    if all(_is_int(v) for v in value):
        return [int_list(value, name)]
    if len(value) > max_items:
        raise bad(f"'{name}' may hold at most {max_items} items, got {len(value)}", name)
    out: list[str | list[int]] = []
    for i, item in enumerate(value):
        if isinstance(item, str):
            out.append(item)
        elif isinstance(item, list) and item:
            out.append(int_list(item, f"{name}[{i}]"))
        else:
            raise bad(f"'{name}[{i}]' must be a string or a non-empty list of token ids", name)
    return out
