"""The infini-gram index: a suffix array over the *reversed* token stream, memory-mapped, and its queries.

Input: the training split's ids in the shard layout (documents back to back, each ending with ``</s>``).
The stream ``<s> d1 </s> <s> d2 </s> ...`` (``<s>`` before every document, so a context that starts at a
document start matches only document starts) is stored reversed, ``reversed_ids.npy`` (uint16 when the
vocabulary fits), beside its suffix array ``suffix_array.npy`` (``arcore.infinigram.suffix_array``); both
are opened with ``np.load(mmap_mode="r")``: memory is O(training tokens) on disk, paged in as queried,
not O(distinct n-grams).

Why reversed: an n-gram model's context grows to the *left* (backing off drops its oldest token). In the
reversed stream the context ``c = x_{t-k} .. x_{t-1}`` reads ``x_{t-1}, x_{t-2}, ..``, a pattern that grows
to the right as k grows, so the suffix-array ranges of the context's suffixes nest: each extra context
token is one binary search on the token at offset k inside the previous range (``match``), and the
longest suffix of the context that occurs is found in one pass, with no search per candidate length
(the infini-gram engine, over the forward stream, searches each candidate length anew). The token that
*follows* an occurrence in forward order precedes it in the reversed stream: the continuations of a
context are ``rev[sa[lo:hi] - 1]`` (``continuations``), and ``count(c w)`` is the range of the pattern
``w, x_{t-1}, x_{t-2}, ..``.

Worked example: documents ``[5, 6, </s>]`` and ``[5, 7, </s>]`` with ``<s> = 1``, ``</s> = 2``: stream
``1 5 6 2 1 5 7 2``; ``count([5]) = 2``, ``count([1, 5]) = 2``, ``count([5, 6]) = 1``; the continuations of
``[1, 5]`` are ``{6, 7}``, so P(6 | <s> 5) = 1/2 at the longest matching suffix.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from arcore.errors import InputError, StageError
from arcore.infinigram.suffix_array import build_suffix_array, suffix_array_dtype

REVERSED_IDS = "reversed_ids.npy"
SUFFIX_ARRAY = "suffix_array.npy"

# pattern(k, rows) -> the token at offset k of the patterns of query ``rows``
Pattern = Callable[[int, np.ndarray], np.ndarray]


def stream_dtype(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16 if vocab_size <= 1 << 16 else np.uint32)


def write_reversed_stream(parts: Iterable[np.ndarray], tokens: int, documents: int, vocab_size: int,
                          bos_id: int, eos_id: int, path: Path) -> int:
    """Write ``<s>`` + each document, reversed, to ``path`` (``.npy``, via a temporary name and a rename),
    from ``parts`` (e.g. one array per shard) holding ``tokens`` ids and ``documents`` documents; returns
    the stream's length ``tokens + documents``. ``[5, 6, 2], [5, 2]`` (bos 1) -> ``[2, 5, 1, 2, 6, 5, 1]``."""
    n = tokens + documents
    tmp = Path(path).with_name(f".{Path(path).name}.tmp")
    rev = np.lib.format.open_memmap(tmp, mode="w+", dtype=stream_dtype(vocab_size), shape=(n,))
    end = n  # the reversed stream is filled from its end: forward position p lands at n - 1 - p
    pending_doc = True  # the next id starts a document
    for part in parts:
        part = np.asarray(part).ravel()
        if not part.size:
            continue
        if np.any(part == bos_id):
            raise InputError(f"the train ids contain <s> (id {bos_id}) inside documents; rebuild the shards")
        starts = np.flatnonzero(part[:-1] == eos_id) + 1
        starts = np.concatenate([[0], starts]) if pending_doc else starts
        ext = np.insert(part, starts, bos_id)
        if ext.size > end:
            raise StageError("the train shards hold more ids than their manifest says; rerun the shards stage")
        rev[end - ext.size:end] = ext[::-1]
        end -= ext.size
        pending_doc = bool(part[-1] == eos_id)
    if end != 0 or not pending_doc:
        raise StageError(f"the train shards hold {n - end} stream ids, their manifest says {n} (or the last "
                         "document lacks </s>); rerun the shards stage")
    rev.flush()
    del rev
    os.replace(tmp, path)
    return n


def write_suffix_array(reversed_ids_path: Path, path: Path) -> int:
    """``build_suffix_array`` of the stream at ``reversed_ids_path`` into a ``.npy`` memory map at ``path``."""
    rev = np.load(reversed_ids_path, mmap_mode="r")
    tmp = Path(path).with_name(f".{Path(path).name}.tmp")
    sa = np.lib.format.open_memmap(tmp, mode="w+", dtype=suffix_array_dtype(rev.size), shape=(rev.size,))
    build_suffix_array(np.asarray(rev), out=sa)
    sa.flush()
    del sa
    os.replace(tmp, path)
    return int(rev.size)


@dataclass(frozen=True, eq=False)
class SuffixIndex:
    """The reversed stream ``rev`` and its suffix array ``sa`` (memory maps), and ``first[v]``: where the
    suffixes starting with token v begin in ``sa`` (``first[v]:first[v + 1]``, the counts' prefix sums)."""

    rev: np.ndarray
    sa: np.ndarray
    first: np.ndarray

    @classmethod
    def open(cls, directory: Path, vocab_size: int) -> "SuffixIndex":
        directory = Path(directory)
        try:
            rev = np.load(directory / REVERSED_IDS, mmap_mode="r")
            sa = np.load(directory / SUFFIX_ARRAY, mmap_mode="r")
        except (OSError, ValueError) as e:
            raise StageError(f"cannot open the infinigram index in {directory}: {e}; rerun the infinigram stage") from None
        if rev.shape != sa.shape:
            raise StageError(f"the infinigram index in {directory} is inconsistent ({rev.size} ids, {sa.size} "
                             "suffixes); rerun the infinigram stage")
        return cls.from_arrays(rev, sa, vocab_size)

    @classmethod
    def from_arrays(cls, rev: np.ndarray, sa: np.ndarray, vocab_size: int) -> "SuffixIndex":
        counts = np.bincount(np.asarray(rev), minlength=vocab_size)[:vocab_size]
        first = np.zeros(vocab_size + 1, dtype=np.int64)
        np.cumsum(counts, out=first[1:])
        return cls(rev, sa, first)

    @property
    def size(self) -> int:
        return int(self.sa.size)

    def token_counts(self) -> np.ndarray:
        """How often each token occurs in the stream (``<s>`` once per document)."""
        return np.diff(self.first)

    def _token_at(self, rows: np.ndarray, depth: int) -> np.ndarray:
        """The token at offset ``depth`` of the suffixes ``sa[rows]`` (-1 past the stream's end)."""
        pos = np.asarray(self.sa[rows], dtype=np.int64) + depth
        past = pos >= self.rev.size
        tokens = np.asarray(self.rev[np.minimum(pos, self.rev.size - 1)], dtype=np.int64)
        tokens[past] = -1
        return tokens

    def _bound(self, lo: np.ndarray, hi: np.ndarray, depth: int, target: np.ndarray, upper: bool) -> np.ndarray:
        """Vectorized ``bisect_left`` (``upper``: ``bisect_right``) of ``target`` among the tokens at offset
        ``depth`` of ``sa[lo:hi]``, which are sorted there because those suffixes share ``depth`` tokens."""
        lo, hi = lo.copy(), hi.copy()
        open_ = np.flatnonzero(lo < hi)
        while open_.size:
            mid = (lo[open_] + hi[open_]) // 2
            value = self._token_at(mid, depth)
            right = value <= target[open_] if upper else value < target[open_]
            lo[open_] = np.where(right, mid + 1, lo[open_])
            hi[open_] = np.where(right, hi[open_], mid)
            open_ = open_[lo[open_] < hi[open_]]
        return lo

    def match(self, pattern: Pattern, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """For each query, the longest prefix of its pattern (at most ``lengths[i]`` tokens) that occurs in
        the stream: ``(matched, lo, hi)``, its length and its ``sa`` range (``hi - lo`` = its count).
        ``matched = 0`` means not even the first token occurs; ``lo, hi`` is then the whole array."""
        lengths = np.asarray(lengths, dtype=np.int64)
        q = lengths.size
        matched = np.zeros(q, dtype=np.int64)
        lo = np.zeros(q, dtype=np.int64)
        hi = np.full(q, self.size, dtype=np.int64)
        rows = np.flatnonzero(lengths > 0)
        depth = 0
        while rows.size:
            token = np.asarray(pattern(depth, rows), dtype=np.int64)
            if depth == 0:
                valid = (token >= 0) & (token < self.first.size - 1)
                t = np.where(valid, token, 0)
                new_lo = np.where(valid, self.first[t], 0)
                new_hi = np.where(valid, self.first[t + 1], 0)
            else:
                new_lo = self._bound(lo[rows], hi[rows], depth, token, upper=False)
                new_hi = self._bound(new_lo, hi[rows], depth, token, upper=True)
            found = new_hi > new_lo
            rows, new_lo, new_hi = rows[found], new_lo[found], new_hi[found]
            depth += 1
            matched[rows], lo[rows], hi[rows] = depth, new_lo, new_hi
            rows = rows[lengths[rows] > depth]
        return matched, lo, hi

    def count(self, sequence) -> int:
        """How often the token sequence ``sequence`` (forward order) occurs in the stream."""
        seq = np.asarray(sequence, dtype=np.int64)[::-1]
        if seq.size == 0:
            return self.size
        matched, lo, hi = self.match(lambda k, rows: seq[k].repeat(rows.size), np.array([seq.size]))
        return int(hi[0] - lo[0]) if matched[0] == seq.size else 0

    def continuations(self, lo: int, hi: int, vocab_size: int) -> np.ndarray:
        """``count(c w)`` for every w, where ``sa[lo:hi]`` is the range of the context c (reversed)."""
        pos = np.asarray(self.sa[lo:hi], dtype=np.int64) - 1
        return np.bincount(np.asarray(self.rev[pos[pos >= 0]]), minlength=vocab_size)[:vocab_size]

    def first_continuation(self, lo: np.ndarray) -> np.ndarray:
        """The token that follows (in forward order) the occurrence at ``sa[lo]``, per query."""
        pos = np.asarray(self.sa[lo], dtype=np.int64) - 1
        return np.where(pos >= 0, np.asarray(self.rev[np.maximum(pos, 0)], dtype=np.int64), -1)
