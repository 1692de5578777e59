"""Incremental detokenization of one choice, with stop strings.

Decoding token by token is wrong for two reasons: a character may span several
byte-level tokens (the first decodes to U+FFFD), and tokenizers such as SentencePiece
decide spacing from the neighbouring tokens. So, like vLLM and HF's ``TextStreamer``,
each step decodes a short window that begins at the tokens read in the previous
emission (context for spacing) and takes the part past that prefix's own text;
nothing is emitted while the window ends inside an incomplete character. This equals
decoding the whole list and taking the new suffix, without the quadratic cost on long
outputs.

Stop strings are matched on the accumulated text; the tail that could still become a
stop string is held back, so a stop string never leaks into the output, even when split
across tokens.
"""

from __future__ import annotations

from typing import Any


class IncrementalDetokenizer:
    """Feed token ids with :meth:`push`; get the new text to emit, and the stop hit.

    Contract: the concatenation of every string returned by :meth:`push` and
    :meth:`flush` is the choice's output text: the decoded tokens, cut before the
    first stop string (or after it, with ``include_stop``).
    """

    def __init__(
        self,
        tokenizer: Any,
        stop: list[str],
        *,
        skip_special_tokens: bool = True,
        include_stop: bool = False,
    ):
        self._tokenizer = tokenizer
        self._stop = stop
        self._max_stop = max((len(s) for s in stop), default=0)
        self._skip = skip_special_tokens
        self._include_stop = include_stop
        self._ids: list[int] = []
        self._prefix_offset = 0  # start of the decode window
        self._read_offset = 0  # tokens whose text is already in self.text
        self.text = ""  # decoded so far (emitted or held back)
        self._emitted = 0  # characters of self.text handed out
        self.stopped: str | None = None

    def _decode(self, ids: list[int]) -> str:
        return str(
            self._tokenizer.decode(
                ids, skip_special_tokens=self._skip, clean_up_tokenization_spaces=False
            )
        )

    def _advance(self) -> None:
        """Append to ``self.text`` whatever the new tokens complete."""
        prefix = self._decode(self._ids[self._prefix_offset : self._read_offset])
        window = self._decode(self._ids[self._prefix_offset :])
        if len(window) > len(prefix) and not window.endswith("\ufffd"):
            self.text += window[len(prefix) :]
            # The tokens just read become the next window's context.
            self._prefix_offset = self._read_offset
            self._read_offset = len(self._ids)

    def _held_back(self) -> int:
        """Length of the longest tail of the text that is a proper prefix of a stop string."""
        longest = 0
        tail = self.text[-self._max_stop :] if self._max_stop else ""
        for stop in self._stop:
            for k in range(min(len(stop) - 1, len(tail)), longest, -1):
                if tail.endswith(stop[:k]):
                    longest = k
                    break
        return longest

    def push(self, token_id: int) -> str:
        """Add one generated token; return the text that is now safe to emit.

        After a stop string is found, :attr:`stopped` names it and the choice is over.
        """
        self._ids.append(token_id)
        self._advance()
        if self._stop:
            # A match can only start where the held-back tail began.
            start = max(0, self._emitted - self._max_stop + 1)
            hits = [(i, s) for s in self._stop if (i := self.text.find(s, start)) >= 0]
            if hits:
                index, stop = min(hits)
                end = index + len(stop) if self._include_stop else index
                self.stopped = stop
                self.text = self.text[:end]
                return self._take(end)
        return self._take(len(self.text) - self._held_back())

    def flush(self) -> str:
        """At the end of the choice: everything still held back (incomplete characters
        decode as U+FFFD), unless a stop string ended it."""
        if self.stopped is None and self._read_offset < len(self._ids):
            window = self._decode(self._ids[self._prefix_offset :])
            prefix = self._decode(self._ids[self._prefix_offset : self._read_offset])
            self.text += window[len(prefix) :]
            self._read_offset = len(self._ids)
        return self._take(len(self.text))

    def _take(self, end: int) -> str:
        if end <= self._emitted:
            return ""
        piece = self.text[self._emitted : end]
        self._emitted = end
        return piece
