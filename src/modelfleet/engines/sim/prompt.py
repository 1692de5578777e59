"""What the simulator reads from a request body: its tokens, its images, its block hashes.

Tokenisation is whitespace words: cheap, deterministic, and easy to predict in a
test ("one two three" is three tokens). The same count is used for usage, for the
prefill time and for the prefix cache, so they always agree.

* completions: the words of ``prompt`` (a string, a list of strings joined, or a
  list of token ids, each id one token).
* chat: the words of every message's text in order, each tagged with its role so
  that "hi" from the user and "hi" from the assistant hash differently (the tag
  does not add tokens). An image part is one token, ``<image:HASH>``, so that a
  different image is a different prefix.
* an empty prompt is one token (think of it as BOS): every request prefills at
  least one token.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import orjson


@dataclass(frozen=True)
class Prompt:
    """A request's prompt as the simulator sees it."""

    tokens: list[str]
    images: list[str] = field(default_factory=list)  # mm hashes of the image parts, in order

    def __len__(self) -> int:
        return len(self.tokens)


def mm_hash(url: str) -> str:
    """The hash an encode step reports for an image: sha256 of its URL (data URLs included).

    Deterministic across processes, so an encode instance and a prefill instance
    agree on it without sharing anything.
    """
    return hashlib.sha256(url.encode()).hexdigest()


def parse_prompt(body: dict[str, Any]) -> Prompt:
    """The tokens and images of a chat (``messages``) or completion (``prompt``) body."""
    tokens: list[str] = []
    images: list[str] = []
    if isinstance(body.get("messages"), list):
        for message in body["messages"]:
            if isinstance(message, dict):
                _message_tokens(message, tokens, images)
    else:
        tokens = _completion_tokens(body.get("prompt", body.get("input", "")))
    return Prompt(tokens or ["<bos>"], images)


def _completion_tokens(prompt: Any) -> list[str]:
    if isinstance(prompt, str):
        return prompt.split()
    if isinstance(prompt, list):
        if all(isinstance(t, int) for t in prompt):
            return [str(t) for t in prompt]  # token ids: one token each
        return " ".join(str(p) for p in prompt).split()
    return str(prompt).split()


def _message_tokens(message: dict[str, Any], tokens: list[str], images: list[str]) -> None:
    role = str(message.get("role", "user"))
    content = message.get("content")
    parts = [{"type": "text", "text": content}] if isinstance(content, str) else content
    if not isinstance(parts, list):
        return  # no content (an assistant turn with tool calls only)
    for part in parts:
        if not isinstance(part, dict):
            continue
        if part.get("type") == "text":
            tokens.extend(f"{role}\x1f{word}" for word in str(part.get("text", "")).split())
        elif part.get("type") == "image_url":
            image = part.get("image_url")
            url = image.get("url", "") if isinstance(image, dict) else str(image or "")
            digest = mm_hash(url)
            images.append(digest)
            tokens.append(f"<image:{digest[:16]}>")


def block_hashes(tokens: list[str], block_size: int) -> list[bytes]:
    """Chained hashes of the full blocks of ``tokens`` (a partial last block has none).

    Block i's hash covers blocks 0..i, as in vLLM: a block is reusable only
    behind the same prefix.
    """
    out: list[bytes] = []
    parent = b""
    for start in range(0, len(tokens) - block_size + 1, block_size):
        block = orjson.dumps(tokens[start:start + block_size])  # JSON: unambiguous joins
        parent = hashlib.blake2b(parent + block, digest_size=16).digest()
        out.append(parent)
    return out
