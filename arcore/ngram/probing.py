"""KeyHash: an ordered linear-probing hash table over int64 n-gram keys, built in bounded memory.

Input: the distinct sorted keys of one n-gram order (``NGramIndex`` keys) with their log probabilities and
log backoffs. Output: ``probe(queries)``, for each query whether it is stored and its slot record
``(hash, row, logprob, logbackoff)``; ``find(queries)``, its row or -1. KenLM's default ``probing`` model
is this structure: the slot holds what scoring needs, so a stored n-gram costs one random memory access
(a sorted array needs ~log2(m), ``np.searchsorted``).

Layout: ``S = num_slots(m) = ceil(1.5 m)`` home slots (KenLM's default multiplier), an overflow tail and
at least one empty sentinel, so probing never wraps around. A slot stores the key's 64-bit hash
``h(key) = (key + 1) * 0x9E3779B97F4A7C15 - 1 mod 2^64`` (Fibonacci hashing; odd multiplier, so a
bijection and the key is implied), and an empty slot stores ``h(-1) = 2^64 - 1``, above every key's hash.
The home slot is ``(h >> 32) * S >> 32``, monotone in ``h``. Keys are placed in increasing hash order,
each at the first free slot at or after its home: ``p_i = max(home_i, p_{i-1} + 1) = i + max(start,
cummax_j(home_j - j))``, one numpy step, exactly what sequential linear probing gives for that order.

So hashes increase along every run of occupied slots, and a lookup from its home slot stops at the first
slot whose hash is >= its own: equal means found, larger (or empty) means absent. Misses stop as early
as hits (ordered hashing, Amble & Knuth 1974), about 2 slots at load 2/3 instead of 5.

Partitions: the top bits of the hash split the keys into groups that occupy consecutive slot ranges, so
``write_table`` builds one partition at a time in memory and appends it to the file: memory for one
partition, whatever the order's size.

Example: keys with hashes 10 and 26, both home slot 3 -> 10 at slot 3, 26 at slot 4; a query with hash
20 and home 3 reads 10 (< 20, go on), then 26 (> 20): absent.
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path
from typing import BinaryIO

import numpy as np

_MULTIPLIER = np.uint64(0x9E3779B97F4A7C15)  # Fibonacci hashing (Knuth): 2^64 / phi, odd
_OFFSET = np.uint64(0x9E3779B97F4A7C14)  # multiplier - 1: h(k) = k * M + M - 1 = (k + 1) * M - 1
_32 = np.uint64(32)
EMPTY = np.uint64(2**64 - 1)  # the hash of an empty slot, h(-1); no key >= 0 hashes to it
MULTIPLIER = 1.5  # home slots per key, KenLM's probing default (load factor 2/3)

SLOT = np.dtype([("hash", "<u8"), ("row", "<i8"), ("logprob", "<f8"), ("logbackoff", "<f8")])
_RAW = np.dtype((np.void, SLOT.itemsize))  # the same bytes without fields: numpy copies it as one block
_WIDE = 16  # slots one probing step reads once few queries are unsettled (8 cache lines)
_STEPS = np.arange(_WIDE)
_FEW = 2048  # with this many queries or fewer still unsettled, a step reads _WIDE slots, not one
# Peak bytes per key while one partition is built: records, hashes, order, homes, positions, and the
# partition's stretch of the table (1.5 slots per key).
_BUILD_BYTES_PER_KEY = 32 + 8 + 8 + 8 + 8 + 48


def num_slots(m: int) -> int:
    """Home slots for ``m`` keys (the table adds an overflow tail and a sentinel after them)."""
    slots = max(1, math.ceil(m * MULTIPLIER))
    if slots >= 1 << 32:
        raise ValueError(f"a probing table holds fewer than 2^32 / {MULTIPLIER} keys per order, not {m}")
    return slots


def hash64(keys: np.ndarray) -> np.ndarray:
    """``(key + 1) * 0x9E3779B97F4A7C15 - 1 mod 2^64`` as uint64 (``-1 -> 2^64 - 1``, the empty slot)."""
    out = np.asarray(keys, dtype=np.int64).view(np.uint64) * _MULTIPLIER  # wraps mod 2^64, as meant
    out += _OFFSET
    return out


def home_slots(hashes: np.ndarray, slots: int) -> np.ndarray:
    """Home slot in ``[0, slots)`` of each 64-bit hash, monotone in the hash (``slots < 2^32``)."""
    out = hashes >> _32
    out *= np.uint64(slots)
    out >>= _32
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
    out = np.zeros(size, dtype=SLOT)
    out["hash"], out["row"] = EMPTY, -1
    return out


def _stretch(rec: np.ndarray, slots: int, start: int) -> np.ndarray:
    """Table slots from ``start`` through the last one ``rec`` occupies (``rec``'s hashes all exceed those
    placed before ``start``). Whole records are moved through the field-less view: numpy copies a void
    item as one block, but a structured one field by field (about 10x slower)."""
    order = np.argsort(rec["hash"])
    pos = place(home_slots(rec["hash"][order], slots), start)
    out = _empty(int(pos[-1]) + 1 - start if pos.size else 0)
    out.view(_RAW)[pos - start] = np.take(rec.view(_RAW), order)
    return out


def _tail(end: int, slots: int) -> np.ndarray:
    """Empty slots after slot ``end - 1`` through the last home slot, then the sentinel."""
    return _empty(max(slots, end) + 1 - end)


class KeyHash:
    """Slot records of one order and its number of home slots; ``slots`` may be a read-only memory map."""

    def __init__(self, slots: np.ndarray, num_home: int):
        if slots.dtype != SLOT or slots.ndim != 1 or slots.size <= num_home:
            raise ValueError(f"not a probing table: dtype {slots.dtype}, {slots.size} slots, {num_home} home")
        self.slots = np.asarray(slots)  # a plain ndarray over a map: np.memmap's subclass hooks are slow
        self.num_home = int(num_home)
        self._raw = self.slots.view(_RAW)
        self._words = self.slots.view(np.uint64)  # contiguous: np.take copies a strided source whole

    @classmethod
    def build(cls, keys: np.ndarray, logprob: np.ndarray | None = None,
              logbackoff: np.ndarray | None = None) -> "KeyHash":
        """The table over ``keys`` in memory (rows are positions in ``keys``; values default to 0)."""
        keys = np.asarray(keys, dtype=np.int64)
        zeros = np.zeros(keys.size)
        rec = records(keys, np.arange(keys.size), zeros if logprob is None else logprob,
                      zeros if logbackoff is None else logbackoff)
        slots = num_slots(keys.size)
        table = _stretch(rec, slots, 0)
        return cls(np.concatenate([table, _tail(table.size, slots)]), slots)

    def probe(self, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(found, records)``: whether each query key (>= 0) is stored, and its slot record where it is.

        ``records`` is a ``(len(queries), 4)`` float64 view of the slot records (columns hash and row as
        64-bit integer bits, logprob, logbackoff); rows where ``found`` is False hold an unrelated slot.

        One whole-record read at the home slot settles most queries; the rest read one hash per step, and
        the last ``_FEW`` the hashes of ``_WIDE`` slots per step, so the number of numpy steps stays small
        even for the longest runs of occupied slots.
        """
        want = hash64(queries)
        slot = home_slots(want, self.num_home)
        got = np.take(self._raw, slot)
        stored = got.view(np.uint64)[::4]
        found = stored == want
        pending = np.flatnonzero(stored < want)
        if pending.size:
            nxt = np.take(slot, pending) + 1  # the next slot each unsettled query reads
            want = np.take(want, pending)
            hit_at, hit_slot = [], []
            last = self.slots.size - 1  # the sentinel: clipping to it reads an empty slot
            while pending.size:
                if pending.size > _FEW:
                    stored = np.take(self._words, nxt * 4)
                    hit, step = stored == want, 1
                    hit_at.append(np.compress(hit, pending))
                    hit_slot.append(np.compress(hit, nxt))
                    keep = np.flatnonzero(stored < want)
                else:
                    window = np.take(self._words, np.minimum(nxt[:, None] + _STEPS, last) * 4)
                    stop = window >= want[:, None]
                    first = stop.argmax(axis=1)
                    hit, step = window[np.arange(first.size), first] == want, _WIDE
                    hit_at.append(pending[hit])
                    hit_slot.append(nxt[hit] + first[hit])
                    keep = np.flatnonzero(~stop.any(axis=1))
                pending, nxt, want = np.take(pending, keep), np.take(nxt, keep) + step, np.take(want, keep)
            at = np.concatenate(hit_at)
            got[at] = np.take(self._raw, np.concatenate(hit_slot))
            found[at] = True
        return found, got.view(np.float64).reshape(-1, 4)

    def find(self, queries: np.ndarray) -> np.ndarray:
        """Row of each query key in the source array, -1 where absent."""
        found, rec = self.probe(queries)
        return np.where(found, rec.view(np.int64)[:, 1], -1)


class RecordSource:
    """Slot records ``[lo, hi)`` of one order, read from its ``.npy`` files with ordinary reads (no memory
    map, so the pages read do not stay in this process's RSS). ``logbackoff`` None: zeros."""

    def __init__(self, keys: Path, logprob: Path, logbackoff: Path | None, size: int, header: int):
        self.paths, self.size, self.header = (keys, logprob, logbackoff), size, header

    def read(self, lo: int, hi: int) -> np.ndarray:
        cols = []
        for path, dtype in zip(self.paths, ("<i8", "<f8", "<f8")):
            if path is None:
                cols.append(np.zeros(hi - lo))
                continue
            with open(path, "rb") as f:
                f.seek(self.header + 8 * lo)
                cols.append(np.fromfile(f, dtype=dtype, count=hi - lo))
        return records(cols[0], np.arange(lo, hi), cols[1], cols[2])


def write_table(out: BinaryIO, source: RecordSource, memory_budget_bytes: int, work_dir: Path) -> int:
    """Append the table over ``source``'s records to ``out`` in bounded memory; returns its length in slots.

    Pass 1 reads the records in chunks and appends each to the partition of its hash's top bits (files
    under ``work_dir``); pass 2 builds each partition's stretch of the table in memory and writes it, in
    partition order, carrying the first free slot from one partition to the next. Memory: about
    ``_BUILD_BYTES_PER_KEY`` bytes per key of the largest partition, whatever the order's size.
    """
    m = source.size
    slots = num_slots(m)
    per_part = max(1, memory_budget_bytes // _BUILD_BYTES_PER_KEY)
    bits = min(16, math.ceil(math.log2(max(1.0, 2.0 * m / per_part))))  # 2x: partitions vary in size
    end = 0
    if bits == 0:
        table = _stretch(source.read(0, m), slots, 0)
        out.write(memoryview(table.view(np.uint8)))
        end = table.size
    else:
        with tempfile.TemporaryDirectory(prefix="probing-", dir=work_dir) as tmp:
            names = [Path(tmp) / f"part{p:05d}.bin" for p in range(1 << bits)]
            chunk = max(1, memory_budget_bytes // (4 * SLOT.itemsize))
            for lo in range(0, m, chunk):
                rec = source.read(lo, min(m, lo + chunk))
                part = (rec["hash"] >> np.uint64(64 - bits)).view(np.int64)
                order = np.argsort(part, kind="stable")
                bounds = np.searchsorted(part[order], np.arange((1 << bits) + 1))
                rec = np.take(rec.view(_RAW), order)
                for p in np.flatnonzero(np.diff(bounds)):
                    with open(names[p], "ab") as f:
                        f.write(memoryview(rec[bounds[p]:bounds[p + 1]].view(np.uint8)))
            for name in names:
                if name.exists():
                    table = _stretch(np.fromfile(name, dtype=SLOT), slots, end)
                    name.unlink()
                    out.write(memoryview(table.view(np.uint8)))
                    end += table.size
    tail = _tail(end, slots)
    out.write(memoryview(tail.view(np.uint8)))
    return end + tail.size
