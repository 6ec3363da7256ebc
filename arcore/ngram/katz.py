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

from pathlib import Path

from arcore.ngram import streamed
from arcore.ngram.additive import _index, _work, unigram_counts
from arcore.ngram.adjust_counts import counts_of_counts
from arcore.ngram.backoff import BackoffModel
from arcore.ngram.corpus_count import CountTables
from arcore.ngram.diskarray import NpyAppender, NpyFile, gather
from arcore.ngram.counts import NGramCounts
from arcore.ngram.index import NGramIndex


def good_turing_discounts(counts: np.ndarray, max_count: int = 5) -> np.ndarray:
    """Katz's ``d_r`` as an array indexed by r (``d[0]`` unused, ``d[r] = 1`` for r > K)."""
    counts = np.asarray(counts)
    return discounts_from_counts_of_counts([np.count_nonzero(counts == r) for r in range(1, max_count + 2)],
                                           max_count)


def discounts_from_counts_of_counts(n_r, max_count: int = 5) -> np.ndarray:
    """``good_turing_discounts`` from ``(n_1, ..., n_{K+1})``: how many n-grams were seen r times."""
    n = np.array([0] + list(n_r), dtype=np.float64)  # n_0 is never read
    d = np.ones(max_count + 1)
    for K in range(max_count, 0, -1):
        if np.any(n[1:K + 2] == 0):
            continue
        common = (K + 1) * n[K + 1] / n[1]
        if common >= 1:  # Katz's formula divides by 1 - common: no discount at this cutoff
            continue
        r = np.arange(1, K + 1)
        dr = ((r + 1) * n[r + 1] / (r * n[r]) - common) / (1 - common)
        if np.all((dr > 0) & (dr <= 1)):
            d[1:K + 1] = dr
            return d
    return d


def _apply(d: np.ndarray, c: np.ndarray) -> np.ndarray:
    """``d_c * c`` with d_r = 1 beyond the table."""
    r = np.minimum(c.astype(np.int64), len(d) - 1)
    factor = np.where(c < len(d), d[r], 1.0)
    return factor * c


def katz_unigrams(c1: np.ndarray, bos: int, max_count: int) -> tuple[np.ndarray, np.ndarray]:
    """The unigram level from the dense counts ``c1`` (``<s>`` 0): probabilities and discounts ``d_r``."""
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
    return p1, d1


def estimate_katz(counts: NGramCounts | NGramIndex, max_count: int = 5, *,
                  unk_id: int | None = None) -> BackoffModel:
    """Katz backoff model of order N (see the module docstring)."""
    index = _index(counts)
    N, V, bos = index.order, index.vocab_size, index.bos_id
    p1, d1 = katz_unigrams(unigram_counts(index), bos, max_count)
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


def stream_katz(tables: CountTables, writer, work_dir: Path, memory_budget_bytes: int, max_count: int = 5):
    """``estimate_katz`` out of core (see the module docstring); returns ``writer.close(info)``.

    Per order n: the counts-of-counts (one pass over the counts) give ``d_r``; pass 1 sums per context
    ``c(c .)`` and the lower order's mass of the seen words (``gather`` of ``p(. | c[1:])`` at the suffix
    rows); pass 2 writes ``p`` and sums it per context, which gives ``alpha``; where Doug Paul's fix applies
    to some context, pass 2 runs again with the fixed totals, as the in-memory estimator recomputes.
    """
    step = streamed.chunk_rows(memory_budget_bytes)
    block = streamed.gather_block(memory_budget_bytes)
    work_dir = _work(work_dir)
    p1, d1 = katz_unigrams(streamed.unigram_counts(tables), tables.bos_id, max_count)
    discounts = [d1.tolist()]
    with np.errstate(divide="ignore", invalid="ignore"):
        logp1 = np.log(p1)
    logp1[tables.bos_id] = -np.inf

    def estimate_order(n: int, p_lower):
        top = counts_of_counts(tables, n, memory_budget_bytes, adjust=False, top=max_count + 1)
        d = discounts_from_counts_of_counts(top, max_count)
        discounts.append(d.tolist())
        total, lower = work_dir / f"total{n - 1}.npy", work_dir / f"lower{n - 1}.npy"
        with NpyAppender(total, np.float64) as t_out, NpyAppender(lower, np.float64) as l_out:
            for _, (t, low) in streamed.context_sums(
                    tables, n, step, lambda ch: (ch.counts.astype(np.float64), gather(p_lower, ch.suffix, block)),
                    2, with_suffix=True):
                t_out.append(t)
                l_out.append(low)
        with np.errstate(divide="ignore", invalid="ignore"):
            p, logbackoff, fixed, any_full = _katz_pass(tables, n, d, NpyFile(total), NpyFile(lower), work_dir, step)
            if any_full:
                fixed.rename(total)
                p, logbackoff, fixed, _ = _katz_pass(tables, n, d, NpyFile(total), NpyFile(lower), work_dir, step)
        for path in (total, lower, fixed):
            path.unlink()
        return NpyFile(logbackoff), NpyFile(p)

    streamed.stream_orders(tables, writer, logp1, p1, estimate_order, memory_budget_bytes)
    return writer.close({"good_turing_discounts": discounts})


def _katz_pass(tables: CountTables, n: int, d: np.ndarray, total: NpyFile, lower: NpyFile, work_dir: Path,
               step: int) -> tuple[Path, Path, Path, bool]:
    """``p`` of order n from the context totals, and from its per-context sums order n-1's log ``alpha``
    and the totals with Doug Paul's fix; returns their paths and whether the fix applies anywhere."""
    any_full = False
    paths = work_dir / f"p{n}.npy", work_dir / f"logbackoff{n - 1}.npy", work_dir / f"fixed{n - 1}.npy"
    with NpyAppender(paths[0], np.float64) as p_out, NpyAppender(paths[1], np.float64) as lb_out, \
            NpyAppender(paths[2], np.float64) as fix_out:
        def probabilities(ch: streamed.RowChunk) -> tuple[np.ndarray]:
            p = _apply(d, ch.counts.astype(np.float64)) / ch.at_context(total)
            p_out.append(p)
            return (p,)

        for start, (mass,) in streamed.context_sums(tables, n, step, probabilities, 1):
            t = total.read(start, start + mass.size)
            num = 1.0 - mass
            full = (t > 0) & (num < 1e-9)
            any_full = any_full or bool(full.any())
            fix_out.append(t + full)
            num = np.maximum(num, 0.0)
            den = np.maximum(1.0 - lower.read(start, start + mass.size), 1e-300)
            lb_out.append(np.log(np.where(t > 0, num / den, 1.0)))
    return (*paths, any_full)
