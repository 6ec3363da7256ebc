"""KeyHash: an ordered linear-probing hash table over int64 n-gram keys, built in bounded memory.

Input: the distinct sorted keys of one n-gram order (``NGramIndex`` keys) with their log probabilities and
log backoffs. Output: ``probe(queries)``, for each query whether it is stored and its slot record
``(hash, row, logprob, logbackoff)``; ``find(queries)``, its row or -1. KenLM's default ``probing`` model
is this structure: the slot holds what scoring needs, so a stored n-gram costs one random memory access
(a sorted array needs ~log2(m), ``np.searchsorted``).

Layout: ``B = num_buckets(m) = ceil(2 m / 2)`` buckets of two 32-byte slots, one 64-byte cache line each
(load factor 1/2), an overflow tail and at least one empty bucket as sentinel, so probing never wraps
around. A slot stores the key's 64-bit hash ``h(key) = (key + 1) * 0x9E3779B97F4A7C15 - 1 mod 2^64``
(Fibonacci hashing; odd multiplier, so a bijection and the key is implied), and an empty slot stores
``h(-1) = 2^64 - 1``, above every key's hash. The home of a key is the first slot of bucket
``(h >> 32) * B >> 32``, monotone in ``h``. Keys are placed in increasing hash order, each at the first
free slot at or after its home: ``p_i = max(home_i, p_{i-1} + 1) = i + max(start, cummax_j(home_j - j))``,
one numpy step, exactly what sequential linear probing gives for that order.

So hashes increase along the whole table, and a lookup from its home stops at the first slot whose hash
is >= its own: equal means found, larger (or empty) means absent (ordered hashing, Amble & Knuth 1974:
misses stop as early as hits). A lookup reads a whole bucket per step, so one cache line settles ~2/3 of
the queries of a real 5-gram's bigram order and two settle ~97%; single slots at KenLM's load 2/3
settled 40% and 59% (measured on a 30 MB source-code corpus, Zipfian queries).

Slot rows: ``row`` when the n-gram is the prefix of a key of the next order, ``~row`` (negative) when not;
a query extended from a negative row could never be found, so scoring skips it (31% of a real 5-gram's
lookups).

Partitions: the top bits of the hash split the keys into groups that occupy consecutive slot ranges, so
``write_table`` builds one partition at a time in memory and appends it to the file: memory for one
partition, whatever the order's size.

Example: keys with hashes 10, 26, 30, all of home bucket 1 (slot 2) -> slots 2, 3, 4; a query with hash
28 and home bucket 1 reads bucket 1 (10, 26: both < 28, go on), then bucket 2 (30 > 28): absent.
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path
from typing import BinaryIO, Callable

import numpy as np

from arcore.ngram.diskarray import drop_pages, read_dropping

_MULTIPLIER = np.uint64(0x9E3779B97F4A7C15)  # Fibonacci hashing (Knuth): 2^64 / phi, odd
_OFFSET = np.uint64(0x9E3779B97F4A7C14)  # multiplier - 1: h(k) = k * M + M - 1 = (k + 1) * M - 1
_32 = np.uint64(32)
EMPTY = np.uint64(2**64 - 1)  # the hash of an empty slot, h(-1); no key >= 0 hashes to it
MULTIPLIER = 2.0  # slots per key (load factor 1/2); KenLM's probing default is 1.5

SLOT = np.dtype([("hash", "<u8"), ("row", "<i8"), ("logprob", "<f8"), ("logbackoff", "<f8")])
_RAW = np.dtype((np.void, SLOT.itemsize))  # the same bytes without fields: numpy copies it as one block
_BUCKET = np.dtype((np.void, 2 * SLOT.itemsize))  # two slots, one 64-byte cache line
_EMPTY_SLOT = np.array([(EMPTY, -1, 0.0, 0.0)], dtype=SLOT)
_WIDE = 16  # slots one probing step reads once few queries are unsettled (8 cache lines)
_STEPS = np.arange(_WIDE)
_FEW = 2048  # with this many queries or fewer still unsettled, a step reads _WIDE slots, not a bucket
# Peak bytes per key while one partition is built: the records twice (read, reordered), hashes, order,
# homes, positions and their temporaries, and the partition's stretch of the table (2 slots per key).
_BUILD_BYTES_PER_KEY = 2 * 32 + 6 * 8 + 64
_BUDGET_SHARE = 0.6  # of memory_budget_bytes (measured peak: about this share, so the caller keeps the rest)


def num_buckets(m: int) -> int:
    """Home buckets for ``m`` keys (the table adds an overflow tail and a sentinel bucket after them)."""
    buckets = max(1, math.ceil(m * MULTIPLIER / 2))
    if buckets >= 1 << 32:
        raise ValueError(f"a probing table holds fewer than 2^33 / {MULTIPLIER} keys per order, not {m}")
    return buckets


def hash64(keys: np.ndarray) -> np.ndarray:
    """``(key + 1) * 0x9E3779B97F4A7C15 - 1 mod 2^64`` as uint64 (``-1 -> 2^64 - 1``, the empty slot)."""
    out = np.asarray(keys, dtype=np.int64).view(np.uint64) * _MULTIPLIER  # wraps mod 2^64, as meant
    out += _OFFSET
    return out


def home_slots(hashes: np.ndarray, buckets: int) -> np.ndarray:
    """Home slot (first slot of the home bucket in ``[0, buckets)``) of each hash, monotone in the hash."""
    out = hashes >> _32
    out *= np.uint64(buckets)
    out >>= np.uint64(31)  # >> 32, then * 2 slots per bucket
    out &= np.uint64(~1 & (2**64 - 1))
    return out.view(np.int64)


def place(home: np.ndarray, start: int) -> np.ndarray:
    """Slot of each key, keys given in order of non-decreasing ``home``, slots before ``start`` taken.

    ``place([3, 3, 3, 7], 0) -> [3, 4, 5, 7]``; ``place([3, 3], 5) -> [5, 6]``.
    """
    i = np.arange(home.size, dtype=np.int64)
    return i + np.maximum(np.maximum.accumulate(home - i), start) if home.size else i


def records(keys: np.ndarray, rows: np.ndarray, logprob: np.ndarray, logbackoff: np.ndarray) -> np.ndarray:
    """Slot records of the given keys (not yet placed)."""
    rec = np.empty(len(keys), dtype=SLOT)
    rec["hash"], rec["row"], rec["logprob"], rec["logbackoff"] = hash64(keys), rows, logprob, logbackoff
    return rec


def _empty(size: int) -> np.ndarray:
    """``size`` empty slots, 64-byte aligned (so that every bucket is one cache line)."""
    raw = np.empty(size * SLOT.itemsize + 64, dtype=np.uint8)
    skip = -raw.ctypes.data % 64
    out = raw[skip:skip + size * SLOT.itemsize].view(SLOT)
    # one pass of whole 32-byte records (four field assignments were four strided passes: ~2x slower)
    out.view(np.uint64).reshape(size, SLOT.itemsize // 8)[:] = _EMPTY_SLOT.view(np.uint64)
    return out


def _stretch(rec: np.ndarray, buckets: int, start: int) -> np.ndarray:
    """Table slots from ``start`` through the last one ``rec`` occupies (``rec``'s hashes all exceed those
    placed before ``start``). Whole records are moved through the field-less view: numpy copies a void
    item as one block, but a structured one field by field (about 10x slower)."""
    order = np.argsort(rec["hash"])
    pos = place(home_slots(rec["hash"][order], buckets), start)
    out = _empty(int(pos[-1]) + 1 - start if pos.size else 0)
    out.view(_RAW)[pos - start] = np.take(rec.view(_RAW), order)
    return out


def _tail(end: int, buckets: int) -> np.ndarray:
    """Empty slots after slot ``end - 1`` through the last home bucket, to a whole bucket, then an empty
    sentinel bucket."""
    size = max(2 * buckets, end + end % 2) + 2
    return _empty(size - end)


class KeyHash:
    """Slot records of one order and its number of home buckets; ``slots`` may be a read-only memory map."""

    def __init__(self, slots: np.ndarray, num_buckets: int):
        if slots.dtype != SLOT or slots.ndim != 1 or slots.size < 2 * num_buckets + 2 or slots.size % 2:
            raise ValueError(f"not a probing table: dtype {slots.dtype}, {slots.size} slots, {num_buckets} "
                             "buckets")
        self.slots = np.asarray(slots)  # a plain ndarray over a map: np.memmap's subclass hooks are slow
        self.num_buckets = int(num_buckets)
        self._raw = self.slots.view(_RAW)
        self._buckets = self.slots.view(_BUCKET)
        self._words = self.slots.view(np.uint64)  # contiguous: np.take copies a strided source whole

    @classmethod
    def build(cls, keys: np.ndarray, logprob: np.ndarray | None = None, logbackoff: np.ndarray | None = None,
              extends: np.ndarray | None = None) -> "KeyHash":
        """The table over ``keys`` in memory (rows are positions in ``keys``; values default to 0;
        ``extends``: which keys prefix a key of the next order, default all)."""
        keys = np.asarray(keys, dtype=np.int64)
        zeros = np.zeros(keys.size)
        rows = np.arange(keys.size)
        rec = records(keys, rows if extends is None else np.where(extends, rows, ~rows),
                      zeros if logprob is None else logprob, zeros if logbackoff is None else logbackoff)
        buckets = num_buckets(keys.size)
        table = _stretch(rec, buckets, 0)
        slots = _empty(table.size + _tail(table.size, buckets).size)
        slots[:table.size] = table
        return cls(slots, buckets)

    def probe(self, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(found, records)``: whether each query key (>= 0) is stored, and its slot record where it is.

        ``records`` is a ``(len(queries), 4)`` float64 view of the slot records (columns hash and row as
        64-bit integer bits, logprob, logbackoff); rows where ``found`` is False hold an unrelated slot.
        The row is stored as ``~row`` (< 0) when the n-gram is no prefix of the next order's keys.

        Each step reads a whole bucket (one cache line) per unsettled query, and once only ``_FEW`` are
        left ``_WIDE`` slots, so the number of numpy steps stays small even for the longest runs.
        """
        want = hash64(queries)
        home = home_slots(want, self.num_buckets)
        got = np.take(self._raw, home)  # numpy's take copies items of up to 32 bytes fast, not 64
        h0 = got.view(np.uint64)[::4]
        h1 = np.take(self._words, home * 4 + 4)  # the same cache line, still cached for short inputs
        second = h1 == want
        found = second | (h0 == want)
        # Hashes increase along occupied slots and an empty one is 2^64 - 1: settled iff one is >= want.
        pending = np.flatnonzero(np.maximum(h0, h1) < want)
        if second.any():
            at = np.flatnonzero(second)
            got[at] = np.take(self._raw, np.take(home, at) + 1)
        if pending.size:
            nxt = np.take(home, pending) + 2  # first slot of the next bucket each unsettled query reads
            want = np.take(want, pending)
            hit_at, hit_slot = [], []
            last = self.slots.size - 1  # the sentinel: clipping to it reads an empty slot
            while pending.size:
                if pending.size > _FEW:
                    h0 = np.take(self._words, nxt * 4)
                    h1 = np.take(self._words, nxt * 4 + 4)
                    second = h1 == want
                    hit = second | (h0 == want)
                    keep = np.flatnonzero(np.maximum(h0, h1) < want)
                    hit_at.append(np.compress(hit, pending))
                    hit_slot.append(np.compress(hit, nxt + second))
                    step = 2
                else:
                    window = np.take(self._words, np.minimum(nxt[:, None] + _STEPS, last) * 4)
                    stop = window >= want[:, None]
                    first = stop.argmax(axis=1)
                    hit = window[np.arange(first.size), first] == want
                    hit_at.append(pending[hit])
                    hit_slot.append(nxt[hit] + first[hit])
                    keep = np.flatnonzero(~stop.any(axis=1))
                    step = _WIDE
                pending, nxt, want = np.take(pending, keep), np.take(nxt, keep) + step, np.take(want, keep)
            at = np.concatenate(hit_at)
            got[at] = np.take(self._raw, np.concatenate(hit_slot))
            found[at] = True
        return found, got.view(np.float64).reshape(-1, 4)

    def find(self, queries: np.ndarray) -> np.ndarray:
        """Row of each query key in the source array, -1 where absent."""
        found, rec = self.probe(queries)
        rows = rec.view(np.int64)[:, 1]
        return np.where(found, np.where(rows < 0, ~rows, rows), -1)


class RecordSource:
    """Slot records of one order, read in increasing ``[lo, hi)`` ranges from its ``.npy`` files with
    ordinary reads (no memory map, so the pages read do not stay in this process's RSS). ``logbackoff``
    None: zeros. ``next_keys``: the keys of order n+1, merged along to flag the rows that extend."""

    def __init__(self, keys: Path, logprob: Path, logbackoff: Path | None, size: int, header: int,
                 next_keys: Path | None = None, next_size: int = 0, vocab_size: int = 1):
        self.paths, self.size, self.header = (keys, logprob, logbackoff), size, header
        self.next_keys, self.next_size, self.vocab_size, self._next_at = next_keys, next_size, vocab_size, 0

    def read(self, lo: int, hi: int) -> np.ndarray:
        cols = []
        for path, dtype in zip(self.paths, ("<i8", "<f8", "<f8")):
            if path is None:
                cols.append(np.zeros(hi - lo))
                continue
            cols.append(read_npy(path, self.header, dtype, lo, hi))
        rows = np.arange(lo, hi)
        return records(cols[0], np.where(self._extends(lo, hi), rows, ~rows), cols[1], cols[2])

    def _extends(self, lo: int, hi: int, block: int = 1 << 20) -> np.ndarray:
        """Which rows in ``[lo, hi)`` are the prefix of an order n+1 key (keys < hi * V, merged in order)."""
        out = np.zeros(hi - lo, dtype=bool)
        while self.next_keys is not None and self._next_at < self.next_size:
            keys = read_npy(self.next_keys, self.header, "<i8", self._next_at,
                            min(self.next_size, self._next_at + block))
            below = int(np.searchsorted(keys, hi * self.vocab_size))
            out[keys[:below] // self.vocab_size - lo] = True
            self._next_at += below
            if below < keys.size:
                break
        return out


def read_npy(path: Path, header: int, dtype: str, lo: int, hi: int) -> np.ndarray:
    """Items ``[lo, hi)`` of a 1-D ``.npy`` file of 8-byte items whose data starts at byte ``header``
    (large reads drop the pages they read: ``diskarray.drop_pages``)."""
    with open(path, "rb") as f:
        f.seek(header + 8 * lo)
        return read_dropping(f, dtype, hi - lo)


def write_table(out: BinaryIO, source: RecordSource, memory_budget_bytes: int, work_dir: Path,
                wrote: Callable[[int], None] = lambda nbytes: None) -> int:
    """Append the table over ``source``'s records to ``out`` in bounded memory; returns its length in slots.

    Pass 1 reads the records in chunks and appends each to the partition of its hash's top bits (files
    under ``work_dir``); pass 2 builds each partition's stretch of the table in memory and writes it, in
    partition order, carrying the first free slot from one partition to the next. Memory: at most about
    ``_BUDGET_SHARE`` of ``memory_budget_bytes`` whatever the order's size (partitions are sized by
    ``_BUILD_BYTES_PER_KEY``). ``wrote(nbytes)`` is told of every write to ``out`` (``PageDropper``); the
    partition files are written out and their pages dropped as pass 1 ends, then dropped as read.
    """
    m = source.size
    buckets = num_buckets(m)
    budget = int(memory_budget_bytes * _BUDGET_SHARE)
    per_part = max(1, budget // _BUILD_BYTES_PER_KEY)
    bits = min(16, math.ceil(math.log2(max(1.0, 1.25 * m / per_part))))  # 1.25: partitions vary in size
    end = 0
    if bits == 0:
        table = _stretch(source.read(0, m), buckets, 0)
        out.write(memoryview(table.view(np.uint8)))
        wrote(table.nbytes)
        end = table.size
    else:
        with tempfile.TemporaryDirectory(prefix="probing-", dir=work_dir) as tmp:
            names = [Path(tmp) / f"part{p:05d}.bin" for p in range(1 << bits)]
            chunk = max(1, budget // (4 * SLOT.itemsize))  # records, sorted copy, partition ids, order
            for lo in range(0, m, chunk):
                rec = source.read(lo, min(m, lo + chunk))
                part = (rec["hash"] >> np.uint64(64 - bits)).astype(np.uint16)  # bits <= 16
                order = np.argsort(part, kind="stable")  # radix sort on 16-bit keys: ~2x a 64-bit one
                bounds = np.searchsorted(part[order], np.arange((1 << bits) + 1))
                rec = np.take(rec.view(_RAW), order)
                for p in np.flatnonzero(np.diff(bounds)):
                    with open(names[p], "ab") as f:
                        f.write(memoryview(rec[bounds[p]:bounds[p + 1]].view(np.uint8)))
            for name in names:
                if name.exists():
                    with open(name, "rb") as f:
                        drop_pages(f, sync=True)
            for name in names:
                if name.exists():
                    with open(name, "rb") as f:
                        part = read_dropping(f, SLOT, -1)
                    table = _stretch(part, buckets, end)
                    name.unlink()
                    out.write(memoryview(table.view(np.uint8)))
                    wrote(table.nbytes)
                    end += table.size
    tail = _tail(end, buckets)
    out.write(memoryview(tail.view(np.uint8)))
    wrote(tail.nbytes)
    return end + tail.size
