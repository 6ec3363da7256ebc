"""KeyHash: a linear-probing hash table over int64 keys, built and queried with whole-array numpy steps.

Input: the distinct sorted keys of one n-gram order (``NGramIndex`` keys). Output: ``find(queries)``, the
position of each query in the key array or -1. KenLM's default ``probing`` model is this structure; a
sorted array needs ~log2(m) random reads per query (``np.searchsorted``), the table ~1.5 at load <= 1/2.

Vectorized probing: every still-unplaced key (or unanswered query) looks at its current slot in the same
numpy step; when several keys want one empty slot, ``np.unique`` picks one winner and the rest step to the
next slot, so a key only ever passes occupied slots and lookups stop at the first empty one, exactly as
in sequential linear probing. Example: keys [10, 26] in 16 slots that both hash to slot 3 ->
10 at slot 3, 26 at slot 4; ``find([26, 7]) -> [1, -1]``.
"""

from __future__ import annotations

import numpy as np

_MULTIPLIER = np.uint64(0x9E3779B97F4A7C15)  # Fibonacci hashing (Knuth): top bits of key * 2^64 / phi


class KeyHash:
    """Positions of int64 keys (each >= 0) in their source array."""

    def __init__(self, keys: np.ndarray):
        keys = np.asarray(keys, dtype=np.int64)
        bits = max(4, int(np.ceil(np.log2(max(2 * keys.size, 1)))) + 1)
        self.mask = np.int64((1 << bits) - 1)
        self.shift = np.uint64(64 - bits)
        self.slot_keys = np.full(1 << bits, -1, dtype=np.int64)
        self.slot_rows = np.full(1 << bits, -1, dtype=np.int64)
        pending = np.arange(keys.size)
        slot = self._hash(keys)
        while pending.size:
            s = slot[pending]
            empty = self.slot_keys[s] == -1
            taken, first = np.unique(s[empty], return_index=True)
            winners = pending[empty][first]
            self.slot_keys[taken] = keys[winners]
            self.slot_rows[taken] = winners
            placed = np.zeros(keys.size, dtype=bool)
            placed[winners] = True
            pending = pending[~placed[pending]]
            slot[pending] = (slot[pending] + 1) & self.mask

    def _hash(self, keys: np.ndarray) -> np.ndarray:
        with np.errstate(over="ignore"):
            return ((keys.astype(np.uint64) * _MULTIPLIER) >> self.shift).astype(np.int64)

    def find(self, queries: np.ndarray) -> np.ndarray:
        """Position of each query key in the source array, -1 where absent."""
        queries = np.asarray(queries, dtype=np.int64)
        out = np.full(queries.size, -1, dtype=np.int64)
        pending = np.arange(queries.size)
        slot = self._hash(queries)
        while pending.size:
            s = slot[pending]
            stored = self.slot_keys[s]
            hit = stored == queries[pending]
            out[pending[hit]] = self.slot_rows[s[hit]]
            go_on = ~hit & (stored != -1)
            pending = pending[go_on]
            slot[pending] = (s[go_on] + 1) & self.mask
        return out
