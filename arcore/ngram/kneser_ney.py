"""Interpolated modified Kneser-Ney, estimated exactly as KenLM's lmplz (no pruning).

Input: raw counts (``NGramIndex``) of orders 1..N. Output: a ``BackoffModel`` whose ARPA file matches
lmplz's. The three stages follow KenLM's ``lm/builder`` files:

1. ``adjust_counts``: the highest order keeps raw counts; a lower-order n-gram gets its continuation
   count, the number of distinct words seen to its left, ``N1+(. w)`` (Kneser & Ney 1995). n-grams that
   start with ``<s>`` cannot be extended to the left and keep their raw count (KenLM collapses its
   ``<s> <s> ...`` padding into them). The unigram ``<s>`` gets 0, like ``<unk>`` and unseen ids.
2. ``kneser_ney_discounts``: three discounts per order from the counts-of-counts n_1..n_4 of the adjusted
   counts (Chen & Goodman 1998, eq. 26): ``Y = n1 / (n1 + 2 n2)``, ``D_k = k - (k+1) Y n_{k+1} / n_k``
   for k = 1, 2, 3 (D_3 applies to every count >= 3). As lmplz, refuse when n1, n2 or n3 is 0 or a
   D_k falls outside [0, k], unless a fallback (lmplz ``--discount_fallback``: 0.5 1 1.5) is given.
   Computed in float64 (lmplz uses float32: the discounts agree to ~1e-7 relative).
3. initial probabilities and interpolation (KenLM ``initial_probabilities`` + ``interpolate``)::

       u(w | c)   = (a(c w) - D(a(c w))) / sum_x a(c x)
       gamma(c)   = (D1 n1(c .) + D2 n2(c .) + D3 n3+(c .)) / sum_x a(c x)
       p(w | c)   = u(w | c) + gamma(c) p(w | c[1:])
       p(w)       = u(w) + gamma() / (V - 1)     # uniform over the vocabulary except <s>

   ``gamma(c)`` is the backoff weight written for context c. ``<unk>`` (and every id never seen in
   training) is a zeroton: ``u = 0``, so it receives exactly the uniform share ``gamma() / (V - 1)``; this
   is lmplz's default (``--interpolate_unigrams``). With the word vocabulary ``<unk> <s> </s> + types``,
   V - 1 is lmplz's "vocabulary size including <unk>, excluding <s>".
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from arcore.errors import InputError
from arcore.ngram.backoff import BackoffModel
from arcore.ngram.counts import NGramCounts
from arcore.ngram.index import NGramIndex


class DiscountError(InputError):
    """Modified Kneser-Ney discounts cannot be computed from these counts."""


@dataclass(frozen=True)
class Discounts:
    """``values[n-1] = (D1, D2, D3+)`` and ``counts_of_counts[n-1] = (n1, n2, n3, n4)`` for order n;
    ``fallback_orders``: the orders whose discounts came from the fallback."""

    values: tuple[tuple[float, float, float], ...]
    counts_of_counts: tuple[tuple[int, int, int, int], ...]
    fallback_orders: tuple[int, ...] = ()


def adjust_counts(index: NGramIndex) -> tuple[np.ndarray, ...]:
    """Adjusted counts per order (order 1 dense over the vocabulary).

    Corpus ``<s> a b </s>``, ``<s> b </s>``, order 2: bigrams keep raw counts; unigram ``b`` has left
    neighbours {a, <s>} -> 2, ``a`` -> 1, ``</s>`` -> 1 (only ``b``), ``<s>`` -> 0.
    """
    N = index.order
    adjusted = [None] * N
    adjusted[N - 1] = index.counts[N - 1].copy()
    for n in range(N - 1, 0, -1):
        size = len(index.keys[n - 1])
        cont = np.bincount(index.suffix_rows[n], minlength=size).astype(np.int64)
        starts_bos = index.first_word(n) == index.bos_id
        adjusted[n - 1] = np.where(starts_bos, index.counts[n - 1], cont)
    adjusted[0] = adjusted[0].copy()
    adjusted[0][index.bos_id] = 0
    return tuple(adjusted)


def kneser_ney_discounts(adjusted: tuple[np.ndarray, ...],
                         fallback: tuple[float, float, float] | None = None) -> Discounts:
    """Chen & Goodman (1998) eq. 26 per order, with KenLM's range check (0 <= D_k <= k)."""
    coc = [tuple(int(np.count_nonzero(a == k)) for k in (1, 2, 3, 4)) for a in adjusted]
    return discounts_from_counts_of_counts(coc, fallback)


def discounts_from_counts_of_counts(coc: list[tuple[int, int, int, int]],
                                    fallback: tuple[float, float, float] | None = None) -> Discounts:
    """The discounts of every order from its adjusted counts-of-counts ``(n1, n2, n3, n4)``."""
    values, fell_back = [], []
    for n, nk in enumerate(coc, start=1):
        try:
            if nk[0] == 0 or nk[0] + 2 * nk[1] == 0 or 0 in nk[:3]:
                raise DiscountError(f"cannot compute Kneser-Ney discounts for {n}-grams: counts-of-counts "
                                    f"n1..n4 = {list(nk)} contain zeros (small or artificial data); set a discount "
                                    "fallback (CLI --discount-fallback, config discount_fallback)")
            y = nk[0] / (nk[0] + 2.0 * nk[1])
            d = tuple(float(k - (k + 1) * y * nk[k] / nk[k - 1]) for k in (1, 2, 3))
            for k, dk in zip((1, 2, 3), d):
                if not 0.0 <= dk <= k:
                    raise DiscountError(f"{n}-gram discount out of range for adjusted count {k}: {dk:.6g}; "
                                        "Kneser-Ney thinks something is odd about the data - set a discount "
                                        "fallback (CLI --discount-fallback, config discount_fallback)")
        except DiscountError:
            if fallback is None:
                raise
            d = tuple(float(x) for x in fallback)
            fell_back.append(n)
        values.append(d)
    return Discounts(tuple(values), tuple(tuple(c) for c in coc), tuple(fell_back))


def _discount(adjusted: np.ndarray, d: tuple[float, float, float]) -> np.ndarray:
    table = np.array([0.0, d[0], d[1], d[2]])
    return table[np.minimum(adjusted, 3)]


def estimate_kneser_ney(counts: NGramCounts | NGramIndex, *, unk_id: int | None = None,
                        discount_fallback: tuple[float, float, float] | None = None) -> BackoffModel:
    """Interpolated modified Kneser-Ney of order ``counts.order`` (see the module docstring)."""
    index = counts if isinstance(counts, NGramIndex) else NGramIndex.from_counts(counts)
    V, N, bos = index.vocab_size, index.order, index.bos_id
    adjusted = adjust_counts(index)
    discounts = kneser_ney_discounts(adjusted, discount_fallback)
    a1 = adjusted[0]
    total = a1.sum()
    if total == 0 or V < 2:
        raise InputError("cannot estimate Kneser-Ney from an empty corpus; give training tokens")
    d1 = _discount(a1, discounts.values[0])
    gamma0 = d1.sum() / total
    p = (a1 - d1) / total + gamma0 / (V - 1)
    with np.errstate(divide="ignore"):
        logprob = [np.log(p)]
    logprob[0][bos] = -np.inf
    logbackoff = []
    prev_p = p
    for n in range(2, N + 1):  # a zero discount gives gamma 0: log backoff -inf, which is what it means
        a = adjusted[n - 1]
        dn = _discount(a, discounts.values[n - 1])
        denom = index.context_totals(n, a.astype(np.float64))
        gamma_sum = index.context_totals(n, dn)
        is_ctx = denom > 0
        gamma = np.where(is_ctx, gamma_sum / np.where(is_ctx, denom, 1.0), 1.0)
        ctx = index.prefix_rows[n - 1]
        pn = (a - dn) / denom[ctx] + gamma[ctx] * prev_p[index.suffix_rows[n - 1]]
        with np.errstate(divide="ignore"):
            logbackoff.append(np.log(gamma))
            logprob.append(np.log(pn))
        prev_p = pn
    logbackoff.append(np.zeros(len(index.keys[N - 1])))
    info = {"discounts": [list(d) for d in discounts.values],
            "counts_of_counts": [list(c) for c in discounts.counts_of_counts],
            "discount_fallback_orders": list(discounts.fallback_orders)}
    return BackoffModel("kneser-ney", N, V, bos, index.eos_id, index.keys, tuple(logprob), tuple(logbackoff),
                        unk_id, info)
