"""adjust_counts (out of core): suffix rows, continuation counts and the counts-of-counts of the tables.

In: ``CountTables`` (``corpus_count``). Out, beside them: ``order{n}.suffix.npy`` for n >= 2, the row in
order n-1 of each n-gram's last n-1 words, and ``order{n}.cont.npy`` for n < N, the continuation count
``N1+(. w)`` of each n-gram: how many distinct words precede it (Kneser & Ney 1995; lmplz's
``adjust_counts``). ``adjusted(tables, n, lo, hi)`` then reads the adjusted counts of any row range: raw
counts at the highest order and for n-grams that start with ``<s>``, continuation counts elsewhere, 0 for
the unigram ``<s>`` (conventions of ``arcore.ngram.kneser_ney``).

Suffix rows come order by order without a join: the suffix of ``c w`` is ``c[1:] w``, so with ``r`` the
prefix row of an n-gram and ``w`` its last word, ``suffix_n = find_{n-1}(suffix_{n-1}[r] * V + w)``, where
``find_{n-1}`` locates a key in the sorted keys of order n-1 (``diskarray.find_sorted``, in blocks). The
prefix rows of a sorted table are non-decreasing, so ``suffix_{n-1}[r]`` is one contiguous read per chunk.
Example, V = 10: bigram key 15 = (1, 5) has suffix row 5 (unigrams are dense); trigram (1, 5, 6) with
prefix row 0 has the suffix key ``5 * 10 + 6 = 56``, whose position among the bigram keys is its suffix row.

Continuation counts are ``bincount(suffix_{n+1})``: computed for one block of rows at a time (one pass
over the suffix rows per block), so the counts of a table larger than the budget never sit in memory.
"""

from __future__ import annotations

import numpy as np

from arcore.ngram.corpus_count import CountTables
from arcore.ngram.diskarray import NpyAppender, NpyFile, find_sorted

BYTES_PER_ROW = 64  # keys, queries, argsort and result of one chunk (int64 each), with headroom


def chunk_rows(memory_budget_bytes: int) -> int:
    return max(1 << 12, memory_budget_bytes // (4 * BYTES_PER_ROW))


def compute_suffix_rows(tables: CountTables, memory_budget_bytes: int) -> None:
    """Write ``order{n}.suffix.npy`` for n = 2..N (see the module docstring)."""
    V = tables.vocab_size
    step = chunk_rows(memory_budget_bytes)
    block = memory_budget_bytes // (4 * 8)
    for n in range(2, tables.order + 1):
        keys = tables.file(n, "keys")
        lower_keys = tables.file(n - 1, "keys") if n >= 3 else None
        lower_suffix = tables.file(n - 1, "suffix") if n >= 3 else None
        with NpyAppender(tables.path(n, "suffix"), np.int64) as out:
            for _, k in keys.chunks(step):
                prefix, word = np.divmod(k, V)
                if n == 2:
                    out.append(word)
                    continue
                lo = int(prefix[0])
                q = lower_suffix.read(lo, int(prefix[-1]) + 1)[prefix - lo] * V + word
                out.append(find_sorted(lower_keys, q, block))


def compute_continuation_counts(tables: CountTables, memory_budget_bytes: int) -> None:
    """Write ``order{n}.cont.npy`` for n = 1..N-1: ``bincount(suffix_{n+1})`` one block of rows at a time."""
    step = chunk_rows(memory_budget_bytes)
    block = max(1, memory_budget_bytes // (4 * 8))
    for n in range(1, tables.order):
        size = tables.num_ngrams[n - 1]
        suffix = tables.file(n + 1, "suffix")
        with NpyAppender(tables.path(n, "cont"), np.int64) as out:
            for lo in range(0, max(size, 1), block):
                hi = min(size, lo + block)
                cont = np.zeros(hi - lo, dtype=np.int64)
                for _, s in suffix.chunks(step):
                    s = s[(s >= lo) & (s < hi)]
                    if s.size:
                        cont += np.bincount(s - lo, minlength=hi - lo)
                out.append(cont)


def adjusted(tables: CountTables, n: int, lo: int, hi: int) -> np.ndarray:
    """Adjusted counts of rows ``[lo, hi)`` of order ``n``."""
    counts = tables.file(n, "counts").read(lo, hi)
    if n == tables.order:
        out = counts
    else:
        out = tables.file(n, "cont").read(lo, hi)
        blo, bhi = tables.bos_rows[n - 1]
        a, b = max(lo, blo), min(hi, bhi)
        if a < b:
            out[a - lo:b - lo] = counts[a - lo:b - lo]
    if n == 1 and lo <= tables.bos_id < hi:
        out[tables.bos_id - lo] = 0
    return out


def counts_of_counts(tables: CountTables, n: int, memory_budget_bytes: int, adjust: bool = True,
                     top: int = 4) -> tuple[int, ...]:
    """``(n_1, ..., n_top)``: how many order-n n-grams have (adjusted) count 1, 2, ..."""
    size = tables.num_ngrams[n - 1]
    step = chunk_rows(memory_budget_bytes)
    hist = np.zeros(top + 1, dtype=np.int64)
    for lo in range(0, size, step):
        a = adjusted(tables, n, lo, lo + step) if adjust else tables.file(n, "counts").read(lo, lo + step)
        hist += np.bincount(np.minimum(a[(a >= 1)], top + 1) - 1, minlength=top + 1)[: top + 1]
    return tuple(int(x) for x in hist[:top])


def count_value_histogram(tables: CountTables, n: int, memory_budget_bytes: int) -> tuple[np.ndarray, np.ndarray]:
    """Raw counts of order n as ``(r, n_r)`` (Zipf's view), streamed: ``np.unique`` per chunk, merged."""
    step = chunk_rows(memory_budget_bytes)
    values, freq = np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    if n == 1:
        c = tables.unigram_counts()
        return np.unique(c[c > 0], return_counts=True)
    for _, c in tables.file(n, "counts").chunks(step):
        v, f = np.unique(c, return_counts=True)
        allv = np.concatenate([values, v])
        allf = np.concatenate([freq, f])
        values, inv = np.unique(allv, return_inverse=True)
        freq = np.bincount(inv, weights=allf).astype(np.int64)
    return values, freq


def adjust_counts(tables: CountTables, memory_budget_bytes: int) -> None:
    """Both passes: suffix rows, then continuation counts."""
    compute_suffix_rows(tables, memory_budget_bytes)
    compute_continuation_counts(tables, memory_budget_bytes)


__all__ = ["adjust_counts", "adjusted", "compute_continuation_counts", "compute_suffix_rows",
           "count_value_histogram", "counts_of_counts", "NpyFile"]
