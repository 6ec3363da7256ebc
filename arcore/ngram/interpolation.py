"""Linear interpolation of orders (Jelinek & Mercer 1980), weights fit by EM on held-out data.

Input: raw counts (``NGramIndex``) of orders 1..N and held-out token ids (the valid split, shard layout).
Output: ``BackoffModel`` whose ``info["weights"]`` holds the fitted weights.

The model interpolates the maximum-likelihood estimates of each order with the next lower order, down
to the uniform distribution over the V' = V - 1 predictable ids (order 0)::

    q_0(w)     = 1 / V'
    q_n(w | c) = mu_n p_ML(w | c) + (1 - mu_n) q_{n-1}(w | c[1:])     if the context c was seen
               = q_{n-1}(w | c[1:])                                   otherwise

(one weight mu_n per order). This is the backoff form with ``logprob(c w) = log q_n(w | c)`` and
``logbackoff(c) = log(1 - mu_n)``, so it is exported to ARPA exactly.

EM: each held-out token is explained by one order; at a token whose longest seen context has order m,
order n <= m is chosen with probability ``mu_n prod_{n < j <= m} (1 - mu_j)`` (order 0 takes the rest).
The E step computes the posterior r_n of each order; the M step sets
``mu_n = sum r_n / sum (r_0 + ... + r_n)`` over the tokens where order n is available, the expected
fraction of visits to order n that stop there. The held-out log-likelihood never decreases.

Out of core: ``stream_interpolated`` takes ``CountTables`` (``corpus_count`` + ``adjust_counts``) and hands
the same arrays, bit for bit, order by order to a writer (``binary.BinaryModelWriter``,
``interpolate.ModelCollector``): one pass per order for the context totals (kept on disk for both uses),
then ``stream_heldout_components`` looks the held-out n-grams up in the sorted tables in blocks (the
held-out split itself, and its ``(T, N+1)`` components, are held in memory: it is the valid split), the EM
runs as above, and one pass per order computes ``q`` with ``q_{n-1}`` gathered at the suffix rows. Beside
the in-memory estimator so that the two spellings of each formula are read, and changed, together.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from arcore.errors import ConfigError
from arcore.ngram import streamed
from arcore.ngram.additive import _index, _work, unigram_counts
from arcore.ngram.backoff import BackoffModel
from arcore.ngram.corpus_count import CountTables
from arcore.ngram.diskarray import NpyFile, gather
from arcore.ngram.counts import NGramCounts, with_bos
from arcore.ngram.index import NGramIndex, lookup


def heldout_components(index: NGramIndex, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(T, N+1)`` ML probability of each held-out token under each order, and availability mask."""
    V, N = index.vocab_size, index.order
    ext, offset = with_bos(ids, index.bos_id, index.eos_id)
    target = offset > 0
    c1 = unigram_counts(index)
    comp = np.zeros((ext.size, N + 1))
    avail = np.zeros((ext.size, N + 1), dtype=bool)
    comp[:, 0], avail[:, 0] = 1.0 / (V - 1), True
    comp[:, 1], avail[:, 1] = c1[ext] / c1.sum(), True
    rows = ext
    for n in range(2, N + 1):
        total = index.context_totals(n, index.counts[n - 1].astype(np.float64))
        ctx = np.full(ext.size, -1, dtype=np.int64)
        ctx[1:] = rows[:-1]
        r = np.full(ext.size, -1, dtype=np.int64)
        r[1:] = lookup(index.keys[n - 1], rows[:-1], ext[1:], V)
        seen_ctx = (ctx >= 0) & (total[np.maximum(ctx, 0)] > 0)
        c = np.where(r >= 0, index.counts[n - 1][np.maximum(r, 0)], 0)
        comp[:, n] = np.where(seen_ctx, c / np.where(seen_ctx, total[np.maximum(ctx, 0)], 1.0), 0.0)
        avail[:, n] = seen_ctx
        rows = r
    return comp[target], avail[target]


def fit_interpolation_weights(comp: np.ndarray, avail: np.ndarray, iterations: int = 200,
                              tol: float = 1e-7) -> np.ndarray:
    """EM for mu_1..mu_N (``mu[0]`` is unused and set to 1); see the module docstring."""
    T, K = comp.shape
    if T == 0:
        raise ConfigError("interpolation needs held-out tokens to fit its weights; the valid split is empty")
    mu = np.full(K, 0.5)
    mu[0] = 1.0
    prev_ll = -np.inf
    for _ in range(iterations):
        w = np.zeros_like(comp)
        remaining = np.ones(T)
        for n in range(K - 1, 0, -1):
            w[:, n] = np.where(avail[:, n], remaining * mu[n], 0.0)
            remaining = np.where(avail[:, n], remaining * (1 - mu[n]), remaining)
        w[:, 0] = remaining
        joint = w * comp
        total = joint.sum(axis=1)
        post = joint / total[:, None]
        reach = np.cumsum(post, axis=1)
        for n in range(1, K):
            den = reach[avail[:, n], n].sum()
            if den > 0:
                mu[n] = np.clip(post[avail[:, n], n].sum() / den, 1e-6, 1 - 1e-6)
        ll = np.log(total).sum()
        if ll - prev_ll < tol * max(1.0, abs(ll)):
            break
        prev_ll = ll
    return mu


def estimate_interpolated(counts: NGramCounts | NGramIndex, heldout_ids: np.ndarray, *,
                          unk_id: int | None = None, iterations: int = 200,
                          weights: Sequence[float] | None = None) -> BackoffModel:
    """Jelinek-Mercer interpolation of orders 0..N with EM weights from ``heldout_ids``.

    ``weights`` (mu_1..mu_N), when given, are used as they are and ``heldout_ids`` is ignored.
    """
    index = _index(counts)
    N, V, bos = index.order, index.vocab_size, index.bos_id
    if weights is not None:
        mu = _given_weights(weights, N)
    else:
        mu = fit_interpolation_weights(*heldout_components(index, heldout_ids), iterations=iterations)
    c1 = unigram_counts(index)
    q = mu[1] * c1 / c1.sum() + (1 - mu[1]) / (V - 1)
    logprob = [np.log(q)]
    logprob[0][bos] = -np.inf
    logbackoff = []
    for n in range(2, N + 1):
        c = index.counts[n - 1].astype(np.float64)
        total = index.context_totals(n, c)
        q = mu[n] * c / total[index.prefix_rows[n - 1]] + (1 - mu[n]) * q[index.suffix_rows[n - 1]]
        logprob.append(np.log(q))
        logbackoff.append(np.where(total > 0, np.log(1 - mu[n]), 0.0))
    logbackoff.append(np.zeros(len(index.keys[-1])))
    return BackoffModel("interpolated", N, V, bos, index.eos_id, index.keys, tuple(logprob), tuple(logbackoff),
                        unk_id, {"weights": mu[1:].tolist()})


def _given_weights(weights: Sequence[float], N: int) -> np.ndarray:
    if len(weights) != N or not all(0.0 <= w <= 1.0 for w in weights):
        raise ConfigError(f"interpolation weights must be {N} numbers in [0, 1], got {list(weights)}")
    return np.concatenate([[1.0], np.asarray(weights, dtype=np.float64)])


def stream_heldout_components(tables: CountTables, ids: np.ndarray, totals: dict[int, NpyFile],
                              block: int) -> tuple[np.ndarray, np.ndarray]:
    """``heldout_components`` against the tables on disk; ``totals[n]``: ``c(h .)`` per row h of order n-1.

    Per order n the query keys ``row(h) * V + w_t`` (h: the n-1 tokens before t, -1 where they were never
    seen) are located by ``find_present`` and the counts and totals read by ``gather``, in blocks.
    """
    V, N = tables.vocab_size, tables.order
    ext, offset = with_bos(ids, tables.bos_id, tables.eos_id)
    target = offset > 0
    c1 = streamed.unigram_counts(tables)
    comp = np.zeros((ext.size, N + 1))
    avail = np.zeros((ext.size, N + 1), dtype=bool)
    comp[:, 0], avail[:, 0] = 1.0 / (V - 1), True
    comp[:, 1], avail[:, 1] = c1[ext] / c1.sum(), True
    rows = ext
    for n in range(2, N + 1):
        ctx = np.full(ext.size, -1, dtype=np.int64)
        ctx[1:] = rows[:-1]
        r = np.full(ext.size, -1, dtype=np.int64)
        r[1:] = streamed.find_present(tables.file(n, "keys"), np.where(rows[:-1] >= 0, rows[:-1] * V + ext[1:], -1),
                                      block)
        has_ctx, hit = ctx >= 0, r >= 0
        total = np.zeros(ext.size)
        total[has_ctx] = gather(totals[n], ctx[has_ctx], block)
        c = np.zeros(ext.size, dtype=np.int64)
        c[hit] = gather(tables.file(n, "counts"), r[hit], block)
        seen_ctx = has_ctx & (total > 0)
        comp[:, n] = np.where(seen_ctx, c / np.where(seen_ctx, total, 1.0), 0.0)
        avail[:, n] = seen_ctx
        rows = r
    return comp[target], avail[target]


def stream_interpolated(tables: CountTables, heldout_ids: np.ndarray | None, writer, work_dir: Path,
                        memory_budget_bytes: int, *, iterations: int = 200,
                        weights: Sequence[float] | None = None):
    """``estimate_interpolated`` out of core (see the module docstring); returns ``writer.close(info)``."""
    N, V, bos = tables.order, tables.vocab_size, tables.bos_id
    step = streamed.chunk_rows(memory_budget_bytes)
    block = streamed.gather_block(memory_budget_bytes)
    work_dir = _work(work_dir)
    mu = _given_weights(weights, N) if weights is not None else None
    totals = {n: streamed.context_totals(tables, n, step, work_dir / f"total{n - 1}.npy") for n in range(2, N + 1)}
    try:
        if mu is None:
            comp, avail = stream_heldout_components(tables, np.asarray(heldout_ids), totals, block)
            mu = fit_interpolation_weights(comp, avail, iterations=iterations)
            del comp, avail
        c1 = streamed.unigram_counts(tables)
        q1 = mu[1] * c1 / c1.sum() + (1 - mu[1]) / (V - 1)
        logp1 = np.log(q1)
        logp1[bos] = -np.inf

        def estimate_order(n: int, q_lower):
            total = totals[n]
            backoffs = streamed.write_pieces(work_dir / f"logbackoff{n - 1}.npy", (
                np.where(t > 0, np.log(1 - mu[n]), 0.0) for _, t in total.chunks(step)))
            q = streamed.write_pieces(work_dir / f"p{n}.npy", (
                mu[n] * ch.counts.astype(np.float64) / ch.at_context(total)
                + (1 - mu[n]) * gather(q_lower, ch.suffix, block)
                for ch in streamed.row_chunks(tables, n, step, with_suffix=True)))
            return backoffs, q

        streamed.stream_orders(tables, writer, logp1, q1, estimate_order, memory_budget_bytes)
    finally:
        for total in totals.values():
            total.path.unlink(missing_ok=True)
    return writer.close({"weights": mu[1:].tolist()})
