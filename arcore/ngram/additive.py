"""Maximum likelihood and add-k (Laplace when k = 1) n-gram models, written in ARPA backoff form.

Input: raw counts (``NGramIndex``) of orders 1..N. Output: ``BackoffModel``. V' = V - 1 is the number of
predictable ids (the vocabulary without ``<s>``); the context h of a token is the last N-1 tokens of its
document, or fewer at the start (``<s>`` included): ``<s> a`` is the whole history of the 2nd word.

MLE: ``p(w | h) = c(h w) / c(h .)`` with ``c(h .) = sum_x c(h x)``. Unseen n-grams in a seen context get
probability 0 (log -inf; ``-99`` in ARPA). An unseen context falls back to its longest seen suffix, the
only choice that keeps every context's distribution summing to 1.

Add-k (Lidstone; Laplace k = 1): ``p(w | h) = (c(h w) + k) / (c(h .) + k V')``; an unseen context gives
the uniform ``1 / V'``. Worked example, k = 1, V' = 4, bigrams, context ``a`` seen 3 times, twice before
``b``: ``p(b | a) = 3/7``, ``p(c | a) = 1/7``, and ``p(. | z) = 1/4`` for an unseen ``z``.

How add-k fits the backoff form exactly: every lower-order entry that is only a back-off step stores the
uniform ``1/V'`` with backoff 1, and a context used directly (length N-1, or starting with ``<s>``) stores
backoff ``k V' / (c(h .) + k V')``, so that an unseen ``w`` gets ``backoff * 1/V' = k / (c(h .) + k V')``.
n-grams starting with ``<s>`` of order < N hold the real add-k probability of the document's first words.

Out of core: ``stream_mle`` and ``stream_add_k`` take ``CountTables`` (``corpus_count`` + ``adjust_counts``)
instead and hand the same arrays, bit for bit, order by order to a writer (``append(n, keys, logprob,
logbackoff)``, ``close(info)``; ``binary.BinaryModelWriter`` or ``interpolate.ModelCollector``). Per order n
two passes over the rows (``arcore.ngram.streamed``): the context totals ``c(h .)`` (streamed bincount),
which give order n-1's backoffs, then ``p`` of every row from its context's total. They sit beside the
in-memory estimators so that the two spellings of each formula are read, and changed, together.
"""

from __future__ import annotations

import numpy as np

from pathlib import Path

from arcore.errors import ConfigError
from arcore.ngram.backoff import BackoffModel
from arcore.ngram.corpus_count import CountTables
from arcore.ngram import streamed
from arcore.ngram.counts import NGramCounts
from arcore.ngram.index import NGramIndex


def _index(counts: NGramCounts | NGramIndex) -> NGramIndex:
    return counts if isinstance(counts, NGramIndex) else NGramIndex.from_counts(counts)


def unigram_counts(index: NGramIndex) -> np.ndarray:
    """Dense raw unigram counts of predicted tokens (``<s>`` set to 0: it is never predicted)."""
    c = index.counts[0].astype(np.float64).copy()
    c[index.bos_id] = 0.0
    return c


def estimate_mle(counts: NGramCounts | NGramIndex, *, unk_id: int | None = None) -> BackoffModel:
    """Maximum-likelihood n-gram model (see the module docstring)."""
    index = _index(counts)
    c1 = unigram_counts(index)
    with np.errstate(divide="ignore", invalid="ignore"):
        logprob = [np.log(c1 / c1.sum())]
        logbackoff = []
        for n in range(2, index.order + 1):
            c = index.counts[n - 1].astype(np.float64)
            total = index.context_totals(n, c)
            logprob.append(np.log(c / total[index.prefix_rows[n - 1]]))
            logbackoff.append(np.where(total > 0, -np.inf, 0.0))
    logprob[0][index.bos_id] = -np.inf
    logbackoff.append(np.zeros(len(index.keys[-1])))
    return BackoffModel("mle", index.order, index.vocab_size, index.bos_id, index.eos_id, index.keys,
                        tuple(logprob), tuple(logbackoff), unk_id)


def estimate_add_k(counts: NGramCounts | NGramIndex, k: float = 1.0, *, unk_id: int | None = None,
                   name: str | None = None) -> BackoffModel:
    """Add-k smoothed model of order N; ``k = 1`` is Laplace (add-one)."""
    if not k > 0:
        raise ConfigError(f"add-k needs k > 0, got {k}; use mle for k = 0")
    index = _index(counts)
    N, V, bos = index.order, index.vocab_size, index.bos_id
    Vp = V - 1
    c1 = unigram_counts(index)
    if N == 1:
        p1 = (c1 + k) / (c1.sum() + k * Vp)
    else:
        p1 = np.full(V, 1.0 / Vp)
    with np.errstate(divide="ignore"):
        logprob = [np.log(p1)]
    logprob[0][bos] = -np.inf
    logbackoff = []
    for n in range(2, N + 1):
        c = index.counts[n - 1].astype(np.float64)
        total = index.context_totals(n, c)
        real = (index.first_word(n) == bos) | (n == N)
        p = np.where(real, (c + k) / (total[index.prefix_rows[n - 1]] + k * Vp), 1.0 / Vp)
        logprob.append(np.log(p))
        direct = (index.first_word(n - 1) == bos) | (n - 1 == N - 1)
        logbackoff.append(np.where(direct & (total > 0), np.log(k * Vp / (total + k * Vp)), 0.0))
    logbackoff.append(np.zeros(len(index.keys[-1])))
    return BackoffModel(name or ("laplace" if k == 1 else "add-k"), N, V, bos, index.eos_id, index.keys,
                        tuple(logprob), tuple(logbackoff), unk_id, {"k": k})


def stream_mle(tables: CountTables, writer, work_dir: Path, memory_budget_bytes: int):
    """``estimate_mle`` out of core (see the module docstring); returns ``writer.close({})``."""
    step = streamed.chunk_rows(memory_budget_bytes)
    work_dir = _work(work_dir)
    c1 = streamed.unigram_counts(tables)
    with np.errstate(divide="ignore", invalid="ignore"):
        logp1 = np.log(c1 / c1.sum())
    logp1[tables.bos_id] = -np.inf

    def estimate_order(n: int, _p_lower):
        total = streamed.context_totals(tables, n, step, work_dir / f"total{n - 1}.npy")
        logbackoff = streamed.write_pieces(work_dir / f"logbackoff{n - 1}.npy", (
            np.where(t > 0, -np.inf, 0.0) for _, t in total.chunks(step)))
        with np.errstate(divide="ignore", invalid="ignore"):
            p = streamed.write_pieces(work_dir / f"p{n}.npy", (
                ch.counts.astype(np.float64) / ch.at_context(total) for ch in streamed.row_chunks(tables, n, step)))
        total.path.unlink()
        return logbackoff, p

    streamed.stream_orders(tables, writer, logp1, None, estimate_order, memory_budget_bytes)
    return writer.close({})


def stream_add_k(tables: CountTables, writer, work_dir: Path, memory_budget_bytes: int, k: float = 1.0):
    """``estimate_add_k`` out of core (see the module docstring); returns ``writer.close({"k": k})``."""
    if not k > 0:
        raise ConfigError(f"add-k needs k > 0, got {k}; use mle for k = 0")
    N, V, bos = tables.order, tables.vocab_size, tables.bos_id
    Vp = V - 1
    step = streamed.chunk_rows(memory_budget_bytes)
    work_dir = _work(work_dir)
    c1 = streamed.unigram_counts(tables)
    p1 = (c1 + k) / (c1.sum() + k * Vp) if N == 1 else np.full(V, 1.0 / Vp)
    with np.errstate(divide="ignore"):
        logp1 = np.log(p1)
    logp1[bos] = -np.inf

    def estimate_order(n: int, _p_lower):
        total = streamed.context_totals(tables, n, step, work_dir / f"total{n - 1}.npy")

        def logbackoff(lo: int, t: np.ndarray) -> np.ndarray:  # order n-1's rows [lo, lo + len(t))
            direct = streamed.in_bos_rows(tables, n - 1, lo, lo + t.size) | (n - 1 == N - 1)
            return np.where(direct & (t > 0), np.log(k * Vp / (t + k * Vp)), 0.0)

        def p(ch: streamed.RowChunk) -> np.ndarray:
            c = ch.counts.astype(np.float64)
            real = streamed.in_bos_rows(tables, n, ch.lo, ch.lo + c.size) | (n == N)
            return np.where(real, (c + k) / (ch.at_context(total) + k * Vp), 1.0 / Vp)

        backoffs = streamed.write_pieces(work_dir / f"logbackoff{n - 1}.npy",
                                         (logbackoff(lo, t) for lo, t in total.chunks(step)))
        probs = streamed.write_pieces(work_dir / f"p{n}.npy", map(p, streamed.row_chunks(tables, n, step)))
        total.path.unlink()
        return backoffs, probs

    streamed.stream_orders(tables, writer, logp1, None, estimate_order, memory_budget_bytes)
    return writer.close({"k": k})


def _work(work_dir: Path) -> Path:
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    return work_dir
