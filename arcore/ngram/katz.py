"""Katz backoff with Good-Turing discounts (Katz 1987).

Input: raw counts (``NGramIndex``) of orders 1..N. Output: ``BackoffModel``.

Good-Turing re-estimates a count r as ``r* = (r+1) n_{r+1} / n_r`` (n_r: number of n-grams seen r times).
Katz discounts only small counts, r <= K (K = 5), and rescales so that the mass taken from them equals
the Good-Turing mass of unseen events ``n_1 / total``::

    d_r = (r*/r - (K+1) n_{K+1} / n_1) / (1 - (K+1) n_{K+1} / n_1)     for 1 <= r <= K,  d_r = 1 above K

If a count-of-counts is zero or some d_r falls outside (0, 1], K is lowered until all are valid (K = 0:
no discount). Then, for a context c seen ``c(c .)`` times::

    p(w | c) = d_{c(c w)} c(c w) / c(c .)                    if c w was seen
             = alpha(c) p(w | c[1:])                          otherwise
    alpha(c) = (1 - sum_{w seen} p(w | c)) / (1 - sum_{w seen} p(w | c[1:]))

The unigram level gives its left-over mass uniformly to the ids never seen in training (``<unk>`` among
them); when every id was seen it is renormalised instead. A context whose counts all exceed K would
keep no mass for unseen words; as SRILM does (Doug Paul's fix), its total is counted once more (at the
unigram level too, when no discount applies and some ids are unseen). Worked example: ``n_1 = 10, n_2 = 4, K = 1``
gives ``1* = 0.8`` and ``d_1 = (0.8 - 0.8) / (1 - 0.8) = 0``: K = 1 is refused and lowered to 0.
"""

from __future__ import annotations

import numpy as np

from arcore.ngram.additive import _index, unigram_counts
from arcore.ngram.backoff import BackoffModel
from arcore.ngram.counts import NGramCounts
from arcore.ngram.index import NGramIndex


def good_turing_discounts(counts: np.ndarray, max_count: int = 5) -> np.ndarray:
    """Katz's ``d_r`` as an array indexed by r (``d[0]`` unused, ``d[r] = 1`` for r > K)."""
    counts = np.asarray(counts)
    n = np.array([np.count_nonzero(counts == r) for r in range(0, max_count + 2)], dtype=np.float64)
    d = np.ones(max_count + 1)
    for K in range(max_count, 0, -1):
        if np.any(n[1:K + 2] == 0):
            continue
        common = (K + 1) * n[K + 1] / n[1]
        r = np.arange(1, K + 1)
        dr = ((r + 1) * n[r + 1] / (r * n[r]) - common) / (1 - common)
        if common < 1 and np.all((dr > 0) & (dr <= 1)):
            d[1:K + 1] = dr
            return d
    return d


def _apply(d: np.ndarray, c: np.ndarray) -> np.ndarray:
    """``d_c * c`` with d_r = 1 beyond the table."""
    r = np.minimum(c.astype(np.int64), len(d) - 1)
    factor = np.where(c < len(d), d[r], 1.0)
    return factor * c


def estimate_katz(counts: NGramCounts | NGramIndex, max_count: int = 5, *,
                  unk_id: int | None = None) -> BackoffModel:
    """Katz backoff model of order N (see the module docstring)."""
    index = _index(counts)
    N, V, bos = index.order, index.vocab_size, index.bos_id
    c1 = unigram_counts(index)
    d1 = good_turing_discounts(c1[c1 > 0], max_count)
    p1 = _apply(d1, c1) / c1.sum()
    zero = (c1 == 0)
    zero[bos] = False
    if zero.any() and p1.sum() > 1.0 - 1e-9:  # no discounted mass left for the unseen ids
        p1 = _apply(d1, c1) / (c1.sum() + 1.0)
    left = max(1.0 - p1.sum(), 0.0)
    if zero.any():
        p1[zero] = left / zero.sum()
    else:
        p1 = p1 / p1.sum()
    discounts = [d1.tolist()]
    with np.errstate(divide="ignore", invalid="ignore"):
        logprob = [np.log(p1)]
        logprob[0][bos] = -np.inf
        logbackoff = []
        prev = p1
        for n in range(2, N + 1):
            c = index.counts[n - 1].astype(np.float64)
            d = good_turing_discounts(c, max_count)
            discounts.append(d.tolist())
            total = index.context_totals(n, c)
            ctx = index.prefix_rows[n - 1]
            p = _apply(d, c) / total[ctx]
            num = 1.0 - index.context_totals(n, p)
            # Doug Paul's fix (as in SRILM): a context whose counts all exceed K keeps no mass for unseen
            # words; count it once more in the denominator so that it does.
            full = (total > 0) & (num < 1e-9)
            if full.any():
                total = total + full
                p = _apply(d, c) / total[ctx]
                num = 1.0 - index.context_totals(n, p)
            num = np.maximum(num, 0.0)
            den = np.maximum(1.0 - index.context_totals(n, prev[index.suffix_rows[n - 1]]), 1e-300)
            alpha = np.where(total > 0, num / den, 1.0)
            logbackoff.append(np.log(alpha))
            logprob.append(np.log(p))
            prev = p
    logbackoff.append(np.zeros(len(index.keys[-1])))
    return BackoffModel("katz", N, V, bos, index.eos_id, index.keys, tuple(logprob), tuple(logbackoff), unk_id,
                        {"good_turing_discounts": discounts})
