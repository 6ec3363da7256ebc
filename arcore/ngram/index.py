"""NGramIndex: n-gram tables addressed by integer keys, the lookup structure every estimator shares.

Input: ``NGramCounts`` (sorted id matrices). Output: for each order n >= 2 a sorted int64 array of keys
``row(prefix) * V + word``, where ``row(prefix)`` is the prefix's row in the order n-1 table and the
unigram table is dense (row = token id). Because rows are ranks in lexicographic order, the keys come out
sorted, and locating any n-gram is n-1 ``np.searchsorted`` calls, vectorized over many n-grams at once.
KenLM's probing tables hash the same information; sorted arrays keep it in numpy.

Example (V = 10): unigrams dense; bigrams ``(1,5), (5,6)`` -> keys ``[15, 56]``; trigram ``(1,5,6)`` ->
``row((1,5)) * 10 + 6 = 0 * 10 + 6 = 6``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from arcore.errors import InputError
from arcore.ngram.counts import NGramCounts


def locate(keys: tuple[np.ndarray, ...], vocab: int, ngrams: np.ndarray) -> np.ndarray:
    """Rows of the order-n n-grams ``ngrams`` (``(m, n)`` ids) in ``keys``; -1 where absent."""
    ngrams = np.asarray(ngrams, dtype=np.int64)
    rows = ngrams[:, 0].copy()
    for j in range(1, ngrams.shape[1]):
        rows = lookup(keys[j], rows, ngrams[:, j], vocab)
    return rows


def lookup(keys_n: np.ndarray, prefix_rows: np.ndarray, words: np.ndarray, vocab: int) -> np.ndarray:
    """Rows of n-grams given their prefix rows (order n-1) and last words; -1 where absent or prefix -1."""
    out = np.full(np.shape(prefix_rows), -1, dtype=np.int64)
    valid = np.flatnonzero(prefix_rows >= 0)  # only n-grams whose prefix exists can exist
    if keys_n.size == 0 or valid.size == 0:
        return out
    q = prefix_rows[valid] * vocab + words[valid]
    idx = np.minimum(np.searchsorted(keys_n, q), keys_n.size - 1)
    hit = keys_n[idx] == q
    out[valid[hit]] = idx[hit]
    return out


def decode(keys: tuple[np.ndarray, ...], vocab: int, n: int) -> np.ndarray:
    """The ``(m_n, n)`` id matrix of order ``n`` (inverse of the key construction)."""
    if n == 1:
        return np.arange(vocab, dtype=np.int64)[:, None]
    prefix, word = np.divmod(keys[n - 1], vocab)
    return np.hstack([decode(keys, vocab, n - 1)[prefix], word[:, None]])


@dataclass(frozen=True, eq=False)
class NGramIndex:
    """Raw counts keyed for lookup. Order 1 is dense: ``counts[0][w]`` for every id ``w < V``.

    ``prefix_rows[n-1]``: row of each order-n entry's first n-1 words in order n-1;
    ``suffix_rows[n-1]``: row of its last n-1 words in order n-1 (exists: every suffix of a seen n-gram
    was seen). Both are empty for n = 1.
    """

    order: int
    vocab_size: int
    bos_id: int
    eos_id: int
    keys: tuple[np.ndarray, ...]
    counts: tuple[np.ndarray, ...]
    prefix_rows: tuple[np.ndarray, ...]
    suffix_rows: tuple[np.ndarray, ...]

    @classmethod
    def from_counts(cls, c: NGramCounts) -> "NGramIndex":
        V = c.vocab_size
        keys = [np.arange(V, dtype=np.int64)]
        uni = np.zeros(V, dtype=np.int64)
        uni[c.ngrams[0][:, 0]] = c.counts[0]
        counts = [uni]
        prefix_rows = [np.zeros(0, dtype=np.int64)]
        for n in range(2, c.order + 1):
            mat = c.ngrams[n - 1]
            prefix = locate(tuple(keys), V, mat[:, :-1])
            if np.any(prefix < 0):
                raise InputError(f"count table of order {n} has n-grams whose prefix is missing from order "
                                 f"{n - 1}; recount with count_ngrams")
            k = prefix * V + mat[:, -1]
            if k.size > 1 and np.any(np.diff(k) <= 0):
                raise InputError(f"count table of order {n} is not sorted or has duplicates; recount")
            keys.append(k)
            counts.append(c.counts[n - 1])
            prefix_rows.append(prefix)
        keys_t = tuple(keys)
        suffix_rows = [np.zeros(0, dtype=np.int64)]
        for n in range(2, c.order + 1):
            suffix = locate(keys_t, V, c.ngrams[n - 1][:, 1:])
            if np.any(suffix < 0):
                raise InputError(f"count table of order {n} has n-grams whose suffix is missing from order "
                                 f"{n - 1}; recount with count_ngrams")
            suffix_rows.append(suffix)
        return cls(c.order, V, c.bos_id, c.eos_id, keys_t, tuple(counts), tuple(prefix_rows), tuple(suffix_rows))

    def first_word(self, n: int) -> np.ndarray:
        """First word of each order-n entry."""
        if n == 1:
            return self.keys[0]
        rows = self.prefix_rows[n - 1]
        for m in range(n - 1, 1, -1):
            rows = self.prefix_rows[m - 1][rows]
        return rows

    def context_totals(self, n: int, values: np.ndarray) -> np.ndarray:
        """Sum of ``values`` (one per order-n entry) per context row of order n-1 (dense for n-1 = 1)."""
        size = self.vocab_size if n == 2 else len(self.keys[n - 2])
        return np.bincount(self.prefix_rows[n - 1], weights=values, minlength=size)
