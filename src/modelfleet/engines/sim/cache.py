"""An LRU prefix cache over chained block hashes, like vLLM's automatic prefix caching."""

from __future__ import annotations

from collections import OrderedDict


class PrefixCache:
    """Up to ``capacity`` cached blocks; a hit is a run of leading blocks already cached.

    Blocks are inserted once a prefill has computed them (so two identical
    requests prefilling at the same time both miss, as in vLLM) and the least
    recently used are evicted first. A capacity of 0 turns caching off.
    """

    def __init__(self, capacity: int, block_size: int) -> None:
        if block_size < 1:
            raise ValueError("block size must be at least 1")
        self.capacity = max(0, capacity)
        self.block_size = block_size
        self._blocks: OrderedDict[bytes, None] = OrderedDict()

    def __len__(self) -> int:
        return len(self._blocks)

    def match(self, hashes: list[bytes], num_tokens: int) -> int:
        """How many leading tokens of a ``num_tokens`` prompt are cached; touches them.

        At least the last token is always recomputed (vLLM does the same: the
        model must run on something to produce the first output token), so the
        hit covers only blocks that lie wholly within the first ``num_tokens - 1``.
        """
        usable = (num_tokens - 1) // self.block_size
        hit = 0
        for digest in hashes[:usable]:
            if digest not in self._blocks:
                break
            self._blocks.move_to_end(digest)
            hit += 1
        return hit * self.block_size

    def insert(self, hashes: list[bytes]) -> None:
        """Cache computed blocks, evicting the least recently used beyond capacity."""
        if not self.capacity:
            return
        for digest in hashes:
            self._blocks[digest] = None
            self._blocks.move_to_end(digest)
        while len(self._blocks) > self.capacity:
            self._blocks.popitem(last=False)
