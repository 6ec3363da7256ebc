"""Interpolated modified Kneser-Ney out of core: KenLM's ``initial_probabilities`` + ``interpolate``.

In: ``CountTables`` after ``adjust_counts`` (suffix rows, continuation counts) and the ``Discounts``.
Out: the model, one order at a time, into a *writer* with ``append(n, keys, logprob, logbackoff)`` and
``close(info)``: ``arcore.ngram.binary.BinaryModelWriter`` (memory-mapped model on disk) or
``ModelCollector`` (a ``BackoffModel`` in memory, for small data and tests). The formulas are those of
``arcore.ngram.kneser_ney`` (Chen & Goodman 1998; lmplz without pruning)::

    u(w | c)   = (a(c w) - D(a(c w))) / sum_x a(c x)
    gamma(c)   = (D1 n1(c .) + D2 n2(c .) + D3 n3+(c .)) / sum_x a(c x)
    p(w | c)   = u(w | c) + gamma(c) p(w | c[1:])

Per order n, two streamed passes over the rows (sorted by context, since the key is
``row(context) * V + w``): the context sums ``sum_x a(c x)`` and ``sum_x D(a(c x))`` (``SegmentSums``, equal
to ``np.bincount`` bit for bit), which give ``gamma`` for order n-1; then ``p`` for every row, reading
``gamma`` and the sums by contiguous slices and ``p(w | c[1:])`` of order n-1 by a blocked ``gather`` at
the suffix rows. Every float operation is the one the in-memory estimator does, in the same order, so
the results are identical to it (and through it to lmplz). Memory: one chunk of rows plus one block of
the order below; ``p`` of each order is kept on disk until the next order has given its backoffs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from arcore.errors import InputError
from arcore.ngram.adjust_counts import adjusted, chunk_rows
from arcore.ngram.backoff import BackoffModel
from arcore.ngram.corpus_count import CountTables
from arcore.ngram.diskarray import NpyAppender, NpyFile, SegmentSums, gather, release_memory
from arcore.ngram.kneser_ney import Discounts


class ModelCollector:
    """A writer that assembles the appended orders into an in-memory ``BackoffModel``."""

    def __init__(self, name: str, order: int, vocab_size: int, bos_id: int, eos_id: int, unk_id: int | None):
        self.args = (name, order, vocab_size, bos_id, eos_id)
        self.unk_id = unk_id
        self.parts: dict[int, list] = {n: [[], [], []] for n in range(1, order + 1)}

    def append(self, n: int, keys, logprob, logbackoff) -> None:
        keys = np.arange(len(logprob), dtype=np.int64) + sum(len(x) for x in self.parts[n][1]) \
            if keys is None else keys
        logbackoff = np.zeros(len(logprob)) if logbackoff is None else logbackoff
        for part, values in zip(self.parts[n], (keys, logprob, logbackoff)):
            part.append(np.asarray(values))

    def close(self, info: dict | None = None) -> BackoffModel:
        joined = [[np.concatenate(p) if p else np.zeros(0) for p in self.parts[n]]
                  for n in range(1, self.args[1] + 1)]
        keys = tuple(j[0].astype(np.int64) for j in joined)
        logprob = tuple(j[1].astype(np.float64) for j in joined)
        logbackoff = tuple(j[2].astype(np.float64) for j in joined)
        return BackoffModel(*self.args, keys, logprob, logbackoff, self.unk_id, info or {})


def _discount(a: np.ndarray, d: tuple[float, float, float]) -> np.ndarray:
    return np.array([0.0, d[0], d[1], d[2]])[np.minimum(a, 3)]


def interpolate_kneser_ney(tables: CountTables, discounts: Discounts, writer, work_dir: Path,
                           memory_budget_bytes: int):
    """Estimate the model order by order into ``writer`` (see the module docstring); returns ``writer.close``."""
    V, N, bos = tables.vocab_size, tables.order, tables.bos_id
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    step = chunk_rows(memory_budget_bytes)
    block = max(1, memory_budget_bytes // (4 * 8))
    a1 = adjusted(tables, 1, 0, V)
    total = a1.sum()
    if total == 0 or V < 2:
        raise InputError("cannot estimate Kneser-Ney from an empty corpus; give training tokens")
    d1 = _discount(a1, discounts.values[0])
    gamma0 = d1.sum() / total
    p_lower: np.ndarray | NpyFile = (a1 - d1) / total + gamma0 / (V - 1)
    with np.errstate(divide="ignore"):
        logp1 = np.log(p_lower)
    logp1[bos] = -np.inf
    pending = (None, logp1)          # order n-1 waiting for its backoff weights: (keys file, logprob)
    for n in range(2, N + 1):
        keys = tables.file(n, "keys")
        suffix = tables.file(n, "suffix")
        m_ctx = tables.num_ngrams[n - 2]
        d = discounts.values[n - 1]
        # pass A: per-context sums -> gamma of order n-1
        denom_sums, gamma_sums = SegmentSums(m_ctx), SegmentSums(m_ctx)
        denom_path, gamma_path = work_dir / f"denom{n - 1}.npy", work_dir / f"gamma{n - 1}.npy"
        with NpyAppender(denom_path, np.float64) as denom_out, NpyAppender(gamma_path, np.float64) as gamma_out:
            def emit(dn_sums: np.ndarray, g_sums: np.ndarray) -> None:
                is_ctx = dn_sums > 0
                denom_out.append(dn_sums)
                gamma_out.append(np.where(is_ctx, g_sums / np.where(is_ctx, dn_sums, 1.0), 1.0))
            for lo, k in keys.chunks(step):
                a = adjusted(tables, n, lo, lo + len(k))
                ctx = k // V
                emit(denom_sums.add(ctx, a.astype(np.float64)), gamma_sums.add(ctx, _discount(a, d)))
            emit(denom_sums.finish(), gamma_sums.finish())
        denom_file, gamma_file = NpyFile(denom_path), NpyFile(gamma_path)
        _write_order(writer, n - 1, pending, gamma_file, step)
        # pass B: p of order n
        p_path = work_dir / f"p{n}.npy"
        with NpyAppender(p_path, np.float64) as p_out:
            for (lo, k), (_, suf) in zip(keys.chunks(step), suffix.chunks(step)):
                a = adjusted(tables, n, lo, lo + len(k))
                dn = _discount(a, d)
                ctx = k // V
                c0, c1 = int(ctx[0]), int(ctx[-1]) + 1
                denom = denom_file.read(c0, c1)[ctx - c0]
                gamma = gamma_file.read(c0, c1)[ctx - c0]
                pn = (a - dn) / denom + gamma * gather(p_lower, suf, block)
                p_out.append(pn)
        for path in (denom_path, gamma_path):
            path.unlink()
        if isinstance(p_lower, NpyFile):
            p_lower.path.unlink()
        p_lower = NpyFile(p_path)
        pending = (keys, p_lower)
        release_memory()  # one order's chunks are the next order's sizes, not its pages
    _write_order(writer, N, pending, None, step)
    if isinstance(p_lower, NpyFile):
        p_lower.path.unlink()
    info = {"discounts": [list(x) for x in discounts.values],
            "counts_of_counts": [list(c) for c in discounts.counts_of_counts],
            "discount_fallback_orders": list(discounts.fallback_orders)}
    return writer.close(info)


def _write_order(writer, n: int, pending, gamma: NpyFile | None, step: int) -> None:
    """Order n into the writer: keys, log p (p in memory for order 1, else on disk), log gamma."""
    keys, p = pending
    if keys is None:  # order 1: dense, p already in log space
        with np.errstate(divide="ignore"):
            logbackoff = None if gamma is None else np.log(gamma.read())
        writer.append(1, None, p, logbackoff)
        return
    for (lo, k), (_, pn) in zip(keys.chunks(step), p.chunks(step)):
        with np.errstate(divide="ignore"):
            logbackoff = None if gamma is None else np.log(gamma.read(lo, lo + len(k)))
            writer.append(n, k, np.log(pn), logbackoff)
