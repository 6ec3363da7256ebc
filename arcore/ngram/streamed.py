"""The passes the streamed estimators share: rows of a count table in chunks, per-context sums, a driver.

In: ``CountTables`` after ``adjust_counts`` (keys, raw counts and suffix rows of every order, sorted on
disk). Out: pieces that MLE, add-k, Katz and interpolated (``stream_*`` in ``additive``, ``katz``,
``interpolation``) are written with, as ``interpolate_kneser_ney`` is for Kneser-Ney:

- ``row_chunks``: the rows of order n in chunks of ``chunk_rows(budget)`` rows (keys, counts, context rows
  ``keys // V``, optionally suffix rows); ``RowChunk.at_context`` reads a per-context array (one value per
  row of order n-1) for the chunk's rows by one contiguous slice, because the contexts are sorted;
- ``context_sums``: ``NGramIndex.context_totals`` streamed (``SegmentSums``), equal to it bit for bit;
- ``in_bos_rows``: ``NGramIndex.first_word(n) == <s>`` for a row range, from ``CountTables.bos_rows``;
- ``find_present``: ``diskarray.find_sorted`` for queries that may be absent (-1), i.e. ``index.lookup``;
- ``stream_orders``: the driver. Order n's backoff weights need order n+1's context sums, so each order is
  handed to the writer one step late, as in ``interpolate``: per n = 2..N, ``estimate_order(n, p_lower)``
  writes order n-1's log backoffs and order n's probabilities to files, then order n-1 goes to the writer.

Memory: one chunk of rows, one block of a table read by ``gather``, and the dense order-1 arrays (V).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np

from arcore.ngram.adjust_counts import BYTES_PER_ROW
from arcore.ngram.corpus_count import CountTables
from arcore.ngram.diskarray import NpyAppender, NpyFile, SegmentSums

# estimate_order(n, p_lower) -> (log backoffs of order n-1, probabilities of order n), both files
OrderEstimator = Callable[[int, "np.ndarray | NpyFile"], tuple[NpyFile, NpyFile]]


def chunk_rows(memory_budget_bytes: int) -> int:
    """Rows per chunk: ``adjust_counts.chunk_rows`` for budgets of 1 MB and more; below, down to 16 rows, so
    that tests with small tables and a budget of a few hundred bytes run every pass over many chunks."""
    return max(16, memory_budget_bytes // (4 * BYTES_PER_ROW))


def gather_block(memory_budget_bytes: int) -> int:
    """Elements per block that ``gather`` and ``find_present`` read (as ``interpolate`` uses)."""
    return max(1, memory_budget_bytes // (4 * 8))


def unigram_counts(tables: CountTables) -> np.ndarray:
    """Dense raw unigram counts of predicted tokens, ``<s>`` set to 0 (``additive.unigram_counts``)."""
    c = tables.unigram_counts().astype(np.float64)
    c[tables.bos_id] = 0.0
    return c


@dataclass(frozen=True)
class RowChunk:
    """Rows ``[lo, lo + len(keys))`` of one order: keys, raw counts, context rows, suffix rows (or None)."""

    lo: int
    keys: np.ndarray
    counts: np.ndarray
    ctx: np.ndarray
    suffix: np.ndarray | None

    def at_context(self, per_context: NpyFile) -> np.ndarray:
        """``per_context[ctx]``: one contiguous read, the contexts of a chunk being sorted."""
        c0, c1 = int(self.ctx[0]), int(self.ctx[-1]) + 1
        return per_context.read(c0, c1)[self.ctx - c0]


def row_chunks(tables: CountTables, n: int, step: int, with_suffix: bool = False) -> Iterator[RowChunk]:
    """The rows of order n >= 2 in chunks of ``step``."""
    V = tables.vocab_size
    keys, counts = tables.file(n, "keys"), tables.file(n, "counts")
    suffixes = tables.file(n, "suffix").chunks(step) if with_suffix else None
    for (lo, k), (_, c) in zip(keys.chunks(step), counts.chunks(step)):
        s = next(suffixes)[1] if suffixes is not None else None
        yield RowChunk(lo, k, c, k // V, s)


def context_sums(tables: CountTables, n: int, step: int, weights: Callable[[RowChunk], Sequence[np.ndarray]],
                 count: int, with_suffix: bool = False) -> Iterator[tuple[int, list[np.ndarray]]]:
    """``(start, sums)``: per row of order n-1 from ``start`` on, the sums over its continuations in order
    n of each of the ``count`` arrays ``weights(chunk)`` gives (one value per row). Together the pieces are
    ``np.bincount(ctx, w, minlength=rows of order n-1)`` for each w, bit for bit (``SegmentSums``)."""
    size = tables.num_ngrams[n - 2]
    sums = [SegmentSums(size) for _ in range(count)]
    start = 0
    for chunk in row_chunks(tables, n, step, with_suffix):
        done = [s.add(chunk.ctx, w) for s, w in zip(sums, weights(chunk))]
        if done[0].size:
            yield start, done
            start += done[0].size
    yield start, [s.finish() for s in sums]


def context_totals(tables: CountTables, n: int, step: int, path: Path) -> NpyFile:
    """``NGramIndex.context_totals(n, raw counts)`` into ``path``: ``c(h .)`` for every row h of order n-1."""
    return write_pieces(path, (s for _, (s,) in context_sums(
        tables, n, step, lambda ch: (ch.counts.astype(np.float64),), 1)))


def in_bos_rows(tables: CountTables, n: int, lo: int, hi: int) -> np.ndarray:
    """For rows ``[lo, hi)`` of order n: whether the n-gram starts with ``<s>`` (``first_word(n) == bos``)."""
    blo, bhi = tables.bos_rows[n - 1]
    rows = np.arange(lo, hi)
    return (rows >= blo) & (rows < bhi)


def find_present(keys: NpyFile | np.ndarray, queries: np.ndarray, block: int) -> np.ndarray:
    """Positions of ``queries`` in the sorted distinct ``keys``, -1 where a query is absent or negative.

    ``keys`` is read in blocks; a query is answered in the first block whose last key is >= it, as in
    ``diskarray.find_sorted``. ``find_present([3, 5, 9], [5, 4, 10, -1], ...)`` -> ``[1, -1, -1, -1]``.
    """
    queries = np.asarray(queries, dtype=np.int64)
    out = np.full(queries.size, -1, dtype=np.int64)
    valid = np.flatnonzero(queries >= 0)
    if valid.size == 0 or len(keys) == 0:
        return out
    order = valid[np.argsort(queries[valid], kind="stable")]
    sq = queries[order]
    done = 0
    for lo in range(0, len(keys), block):
        if done == sq.size:
            break
        values = keys[lo:lo + block] if isinstance(keys, np.ndarray) else keys.read(lo, lo + block)
        stop = done + int(np.searchsorted(sq[done:], values[-1], side="right"))
        if stop > done:
            pos = np.searchsorted(values, sq[done:stop])
            hit = values[np.minimum(pos, values.size - 1)] == sq[done:stop]
            out[order[done:stop][hit]] = lo + pos[hit]
            done = stop
    return out


def write_pieces(path: Path, pieces: Iterable[np.ndarray]) -> NpyFile:
    """The float64 ``pieces`` one after another into ``path``, opened for slices."""
    with NpyAppender(path, np.float64) as out:
        for piece in pieces:
            out.append(piece)
    return NpyFile(path)


def stream_orders(tables: CountTables, writer, logp1: np.ndarray, p1: np.ndarray | None,
                  estimate_order: OrderEstimator, memory_budget_bytes: int) -> None:
    """Hand orders 1..N to ``writer`` (see the module docstring): order 1 as ``logp1`` (dense, in memory),
    order n >= 2 as the log of the probabilities ``estimate_order`` wrote. ``p1``: what ``estimate_order(2)``
    gets as ``p_lower`` (the unigram probabilities, where the estimator needs them)."""
    step = chunk_rows(memory_budget_bytes)
    p_lower: np.ndarray | NpyFile | None = p1
    for n in range(2, tables.order + 1):
        logbackoff, p_n = estimate_order(n, p_lower)
        if n == 2:
            writer.append(1, None, logp1, logbackoff.read())
        else:
            _append_order(writer, tables, n - 1, p_lower, logbackoff, step)
        logbackoff.path.unlink()
        if isinstance(p_lower, NpyFile):
            p_lower.path.unlink()
        p_lower = p_n
    if tables.order == 1:
        writer.append(1, None, logp1, None)
    else:
        _append_order(writer, tables, tables.order, p_lower, None, step)
        p_lower.path.unlink()


def _append_order(writer, tables: CountTables, n: int, p: NpyFile, logbackoff: NpyFile | None, step: int) -> None:
    backoffs = logbackoff.chunks(step) if logbackoff is not None else None
    for (_, k), (_, pn) in zip(tables.file(n, "keys").chunks(step), p.chunks(step)):
        with np.errstate(divide="ignore", invalid="ignore"):
            logprob = np.log(pn)
        writer.append(n, k, logprob, next(backoffs)[1] if backoffs is not None else None)
