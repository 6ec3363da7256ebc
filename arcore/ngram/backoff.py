"""BackoffModel: an n-gram language model in ARPA's backoff form, scored state-in/state-out and vectorized.

Input: an ``NGramIndex``'s keys plus, per order, a log-probability for every stored n-gram and a log
backoff weight for every stored context (natural logs). Every estimator in this package (MLE, add-k,
interpolation, Katz, Kneser-Ney) produces one; ARPA files load into one. Output: ``arcore.lm.LanguageModel``.

The backoff rule (what KenLM's query and every ARPA reader compute)::

    log p(w | c) = logprob(c w)                          if the n-gram c w is stored
                 = logbackoff(c) + log p(w | c[1:])      otherwise (logbackoff = 0 when c is not stored)

with the unigram table dense over the whole vocabulary. ``<s>`` (bos) gets log probability -inf: it is
context only, never predicted.

Vectorized scoring: ``<s>`` is inserted before each document; for each order n the row of the n-gram
ending at a position is found from the row of the (n-1)-gram ending one position earlier: one
vectorized lookup per order through a linear-probing hash table as in KenLM's probing model
(``probing.KeyHash``), whose slot also holds the log probability and backoff, so a stored n-gram costs
one random read. Only positions whose (n-1)-gram is stored and is the prefix of some n-gram are looked
up at order n. n-grams that would cross a document never match, because no stored n-gram has ``<s>``
after its first word. Positions go through in windows of ``_SCORE_CHUNK``, so temporaries stay in cache.
The arrays may be read-only memory maps (``binary.load_binary``, which also supplies prebuilt tables);
in-memory models build their tables on first use.
"""

from __future__ import annotations

from dataclasses import dataclass, field
import mmap
import os
from functools import cached_property
from pathlib import Path

import numpy as np

from arcore.errors import InputError, StageError
from arcore.ngram.counts import atomic_write, document_starts, with_bos
from arcore.ngram.diskarray import mapped_rss_bytes
from arcore.ngram.index import decode, locate
from arcore.ngram.probing import KeyHash


_RELEASE_BYTES = 2 << 30  # mapped models above this size give their pages back when RSS grew by this much
# (below it, the whole model resident is as much as KenLM holds for it; above it, e.g. a 5-gram of 1 GB of
# text at ~16 GB of files, scoring would otherwise keep every page it touched)
_SCORE_CHUNK_RELEASED = 1 << 10  # and score in smaller windows: the kernel maps up to 16 cached pages around
# each faulting one (fault-around), so one window of 2^k positions can add up to 2^k * (order - 1) * 64 KiB of
# resident pages (2^14 took a 1 GB-corpus 5-gram's valid scoring to 4.9 GB; 2^10 bounds a window at ~0.3 GB).
# Worse, pages cached by the writer sit in large folios (one 1 MiB write: one folio), and a fault maps its
# whole folio: 4,000 random reads of a 2 GiB file just written mapped 1.76 GB. _small_pages drops those.
_SCORE_CHUNK = 1 << 16  # positions scored at once: temporaries stay in cache (2^16 measured ~10% faster than
# one window for everything, smaller windows slower from per-call overhead)


def _with_bos(ids: np.ndarray, bos_id: int, eos_id: int) -> tuple[np.ndarray, np.ndarray]:
    """``counts.with_bos``'s extended array, and a mask of its positions that are not the inserted ``<s>``.

    ``[5, 6, 2, 5, 2] -> [1, 5, 6, 2, 1, 5, 2], [F, T, T, T, F, T, T]`` (bos 1, eos 2).
    """
    starts = document_starts(ids, eos_id)  # refuses a trailing partial document
    if ids.size and np.any(ids == bos_id):
        with_bos(ids, bos_id, eos_id)  # raises its InputError
    ext = np.empty(ids.size + starts.size, dtype=np.int64)
    keep = np.ones(ext.size, dtype=bool)
    keep[starts + np.arange(starts.size)] = False
    ext[keep] = ids
    ext[~keep] = bos_id
    return ext, keep


@dataclass(frozen=True, eq=False)
class BackoffModel:
    """``keys[n-1]``, ``logprob[n-1]``, ``logbackoff[n-1]`` for n = 1..order; order 1 is dense (row = id)."""

    name: str
    order: int
    vocab_size: int
    bos_id: int
    eos_id: int
    keys: tuple[np.ndarray, ...]
    logprob: tuple[np.ndarray, ...]
    logbackoff: tuple[np.ndarray, ...]
    unk_id: int | None = None
    info: dict = field(default_factory=dict)

    # Prebuilt lookup structures, e.g. memory-mapped by ``binary.load_binary``: which ids start a stored
    # bigram (bool, V), then a ``KeyHash`` per order >= 2.
    tables: tuple | None = field(default=None, repr=False)

    @cached_property
    def _tables(self) -> tuple:
        """Unigram flags and hash tables over the orders >= 2 (KenLM's probing layout): prebuilt, or
        built on first use."""
        if self.tables is not None:
            return self.tables
        return (self._extends(1),) + tuple(
            KeyHash.build(self.keys[n - 1], self.logprob[n - 1], self.logbackoff[n - 1], self._extends(n))
            for n in range(2, self.order + 1))

    def _extends(self, n: int) -> np.ndarray:
        """Which order-n entries are the prefix of an order n+1 entry."""
        if n == self.order:
            return np.zeros(len(self.keys[n - 1]), dtype=bool)
        return np.bincount(np.asarray(self.keys[n]) // self.vocab_size, minlength=len(self.keys[n - 1])) > 0

    def _find(self, n: int, prefix_rows: np.ndarray, words: np.ndarray) -> np.ndarray:
        """Rows of order-n n-grams from their prefix rows and last words; -1 where absent."""
        out = np.full(prefix_rows.shape, -1, dtype=np.int64)
        valid = np.flatnonzero(prefix_rows >= 0)
        out[valid] = self._tables[n - 1].find(prefix_rows[valid] * self.vocab_size + words[valid])
        return out

    # ----- the LanguageModel interface -------------------------------------------------------------
    def initial_state(self, batch_size: int) -> np.ndarray:
        """``(batch, order-1)``: row of the length-k context ending at the last token, k = 1..order-1."""
        state = np.full((batch_size, max(self.order - 1, 1)), -1, dtype=np.int64)
        state[:, 0] = self.bos_id
        return state

    def state_of(self, contexts: np.ndarray) -> np.ndarray:
        """States for explicit contexts ``(batch, k)`` of ids (the last k tokens; ``<s>`` may lead)."""
        contexts = np.asarray(contexts, dtype=np.int64).reshape(len(contexts), -1)
        state = np.full((len(contexts), max(self.order - 1, 1)), -1, dtype=np.int64)
        if contexts.shape[1] == 0:
            return self.initial_state(len(contexts))
        for j in range(1, min(contexts.shape[1], self.order - 1) + 1):
            state[:, j - 1] = locate(self.keys, self.vocab_size, contexts[:, -j:])
        if self.order == 1:
            state[:, 0] = contexts[:, -1]
        return state

    def advance(self, state: np.ndarray, tokens: np.ndarray) -> np.ndarray:
        tokens = np.asarray(tokens, dtype=np.int64)
        new = np.full_like(state, -1)
        new[:, 0] = tokens
        for k in range(1, self.order - 1):
            new[:, k] = self._find(k + 1, state[:, k - 1], tokens)
        return new

    def select(self, state: np.ndarray, rows: np.ndarray) -> np.ndarray:
        return state[np.asarray(rows, dtype=np.int64)]

    def next_logprobs(self, state: np.ndarray) -> np.ndarray:
        V = self.vocab_size
        out = np.tile(self.logprob[0], (state.shape[0], 1))
        for k in range(1, self.order):
            ctx = state[:, k - 1]
            has = ctx >= 0
            if not has.any():
                break
            out[has] += self.logbackoff[k - 1][ctx[has]][:, None]
            keys = self.keys[k]
            lo = np.searchsorted(keys, np.where(has, ctx, 0) * V)
            hi = np.searchsorted(keys, np.where(has, ctx + 1, 0) * V)
            lengths = np.where(has, hi - lo, 0)
            if lengths.sum() == 0:
                continue
            batch = np.repeat(np.arange(state.shape[0]), lengths)
            entries = np.repeat(lo - np.cumsum(lengths) + lengths, lengths) + np.arange(lengths.sum())
            out[batch, keys[entries] % V] = self.logprob[k][entries]
        return out

    def score(self, ids: np.ndarray) -> np.ndarray:
        """Per-token natural log P(ids[t] | document so far), one entry per element of ``ids``.

        Order by order over the positions where the previous order matched (an n-gram can only be stored
        if its prefix is): each probe returns the slot record (row, logprob, logbackoff) in one read.
        """
        ids = np.asarray(ids, dtype=np.int64)
        if ids.size and (ids.min() < 0 or ids.max() >= self.vocab_size):
            raise InputError(f"token ids must lie in [0, {self.vocab_size}) for this model; got "
                             f"[{ids.min()}, {ids.max()}] - was it trained with another tokenizer?")
        ext, keep = _with_bos(ids, self.bos_id, self.eos_id)
        logp = np.empty(ext.size)
        # Windows of _SCORE_CHUNK positions keep every temporary array and the table lines just read in
        # cache; a window starts order - 1 positions early, so each kept position has its whole history.
        # A mapped model larger than _RELEASE_BYTES drops the pages each smaller window touched, so RSS
        # stays near one window's pages (release_pages) instead of growing to the model's size.
        release = sum(len(mm) for mm, _ in self._maps) > _RELEASE_BYTES
        chunk = _SCORE_CHUNK_RELEASED if release else _SCORE_CHUNK
        if release:
            self._small_pages  # noqa: B018 - once per model: cached property
        for lo in range(0, ext.size, chunk):
            start = max(0, lo - (self.order - 1))
            logp[lo:lo + chunk] = self._score_window(ext[start:lo + chunk])[lo - start:]
            if release and mapped_rss_bytes() > _RELEASE_BYTES // 4:  # absolute: holds across calls
                self.release_pages()
        return logp[keep]

    @cached_property
    def _maps(self) -> tuple:
        """(memory map, file name) under each of this model's arrays (a model from ``load_binary``; none
        for a model in memory)."""
        arrays = [*self.keys, *self.logprob, *self.logbackoff]
        for table in self.tables or ():
            arrays.append(getattr(table, "slots", table))
        maps = {}
        for a in arrays:
            filename = None
            while a is not None:
                filename = getattr(a, "filename", None) or filename  # np.memmap, between view and map
                mm = getattr(a, "_mmap", None)
                if mm is not None:
                    maps[id(mm)] = (mm, filename)
                    break
                a = getattr(a, "base", None)
        return tuple(maps.values())

    @cached_property
    def _small_pages(self) -> bool:
        """Make later faults on this model's maps add one page each, not a folio or a readahead window:
        unmap what this process mapped, drop the files' clean cached pages (``POSIX_FADV_DONTNEED``; pages
        other processes map stay), and mark the maps random (``MADV_RANDOM``: no readahead, so a page read
        back from disk is cached as a single page). Measured on a 2 GiB file: 4,000 random reads mapped
        1.76 GB right after writing it in 1 MiB writes, 240 MB with default readahead, 22 MB this way."""
        self.release_pages()
        for mm, filename in self._maps:
            try:
                if filename is not None:
                    fd = os.open(filename, os.O_RDONLY)
                    try:
                        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
                    finally:
                        os.close(fd)
                mm.madvise(mmap.MADV_RANDOM)
            except (OSError, ValueError, AttributeError):
                pass  # advice only: a platform without it scores the same, with more pages resident
        return True

    def release_pages(self) -> None:
        """Drop the mapped pages read so far from this process's resident set (``MADV_DONTNEED``; they stay
        in the page cache, so reading them again costs a minor fault). Random probes of a large mapped
        model would otherwise leave every page they touched resident: scoring 1.45 M tokens with the
        100 MB-corpus 5-gram (1.6 GB of files) raised RSS from 0.1 GB to 1.3 GB. For models over
        ``_RELEASE_BYTES``, ``score`` calls it after a window once the process's file-backed resident pages
        pass a quarter of that (an absolute bound, so it holds across the many ``score`` calls of an
        evaluation), so they stay within about 0.5 GB plus one window's pages."""
        for mm, _ in self._maps:
            try:
                mm.madvise(mmap.MADV_DONTNEED)
            except (OSError, ValueError, AttributeError):
                pass

    def _score_window(self, ext: np.ndarray) -> np.ndarray:
        """``score`` of every position of ``ext`` (``<s>`` already inserted) given only ``ext`` itself."""
        logp = np.take(np.asarray(self.logprob[0], dtype=np.float64), ext)
        V, last = self.vocab_size, ext.size - 1
        after = ext[1:]  # after[t] = ext[t + 1]: the word following a context that ends at t
        matched = np.ones(ext.size, dtype=np.int8)  # order of the longest stored n-gram ending at t
        # Stored contexts of length k: where they end (t - 1 for the token at t) and their backoffs.
        ends, rows = np.arange(last), ext[:-1]
        contexts = [(ends, np.take(self.logbackoff[0], rows))]
        if self.order > 1:
            more = np.flatnonzero(np.take(self._tables[0], rows))  # a word that starts no bigram: chain ends
            ends, rows = np.take(ends, more), np.take(rows, more)
        for n in range(2, self.order + 1):
            if ends.size == 0:
                break
            query = rows * V
            query += np.take(after, ends)
            found, rec = self._tables[n - 1].probe(query)
            hits = np.flatnonzero(found)
            at, rec = np.take(ends, hits) + 1, np.take(rec, hits, axis=0)
            logp[at] = rec[:, 2]
            matched[at] = n
            if n < self.order:
                cut = at.size - int(at.size > 0 and at[-1] == last)  # at is sorted: only the end can be last
                contexts.append((at[:cut], rec[:cut, 3]))
                rows = rec[:cut, 1].view(np.int64)  # ~row where no order n+1 key extends it
                more = np.flatnonzero(rows >= 0)
                ends, rows = np.take(at, more), np.take(rows, more)
        # Backoff weights of the stored contexts longer than the matched n-gram, shortest first.
        logp_after, matched_after = logp[1:], matched[1:]
        for k, (ends, weights) in enumerate(contexts, start=1):
            use = np.take(matched_after, ends) <= k
            logp_after[np.compress(use, ends)] += np.compress(use, weights)
        return logp

    # ----- inspection and persistence --------------------------------------------------------------
    def ngrams(self, n: int) -> np.ndarray:
        """``(m_n, n)`` ids of the stored n-grams of order ``n`` (order 1: the whole vocabulary)."""
        return decode(self.keys, self.vocab_size, n)

    def num_ngrams(self) -> list[int]:
        return [len(k) for k in self.keys]

    def save(self, path: Path) -> None:
        """Exact arrays as ``.npz`` (the ARPA file is the portable copy, rounded to 10 digits)."""
        arrays = {"meta": np.array([self.order, self.vocab_size, self.bos_id, self.eos_id,
                                    -1 if self.unk_id is None else self.unk_id]),
                  "name": np.array(self.name)}
        for n in range(1, self.order + 1):
            arrays[f"keys{n}"] = self.keys[n - 1]
            arrays[f"logprob{n}"] = self.logprob[n - 1]
            arrays[f"logbackoff{n}"] = self.logbackoff[n - 1]
        atomic_write(Path(path), lambda f: np.savez(f, **arrays))

    @classmethod
    def load(cls, path: Path) -> "BackoffModel":
        try:
            z = np.load(Path(path))
        except (OSError, ValueError) as exc:
            raise StageError(f"cannot read n-gram model {path} ({exc}); rerun the ngram stage") from None
        order, V, bos, eos, unk = (int(x) for x in z["meta"])
        return cls(str(z["name"]), order, V, bos, eos,
                   tuple(z[f"keys{n}"] for n in range(1, order + 1)),
                   tuple(z[f"logprob{n}"] for n in range(1, order + 1)),
                   tuple(z[f"logbackoff{n}"] for n in range(1, order + 1)),
                   None if unk < 0 else unk)
