"""Arrays on disk, read and written in bounded pieces: the storage every out-of-core n-gram pass uses.

Input and output: ``.npy`` files (``np.load`` reads them, ``mmap_mode="r"`` maps them), one 1-D array each.
``NpyAppender`` writes one chunk at a time and patches the header at the end; ``NpyFile`` reads
slices with ordinary file reads. Ordinary reads matter: pages of a memory map count in the process's RSS
while they are mapped, so a pass that touched a whole table through a map would hold the table, while a
pass that reads slices holds only the slice (the kernel's page cache keeps the file warm either way).

Three access patterns cover every pass:

- ``chunks``: sequential slices (most passes);
- ``gather``: ``table[idx]`` for an unsorted ``idx`` against a table too large to load, by sorting ``idx``
  and reading the table in blocks, so memory is one block plus ``idx``;
- ``segment_sums``: per-row sums of values keyed by a sorted row index (the context totals of the
  estimators), streamed with a carry so that the result equals ``np.bincount`` on the whole array bit for
  bit (each row's sum is accumulated in the same order).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

import numpy as np

_HEADER_SPACE = 128  # bytes reserved for the .npy header (version 1.0, 1-D shapes up to ~10**30 elements)


DROP_BYTES = 64 << 20  # a streamed file's pages are written out and dropped every this many bytes


def drop_pages(f, offset: int = 0, length: int = 0, sync: bool = False) -> None:
    """Drop ``f``'s pages (``offset``, ``length``: a range; 0, 0: the whole file) from the page cache,
    after writing its dirty pages to the disk first when ``sync`` (only clean pages can be dropped).

    Why the passes stream their files through a small page cache: a page-cache page the kernel takes
    from free memory costs as much as a fresh anonymous page, and far more on a VM whose free memory goes
    back to the host (measured here: 4 GB written in 64 MB writes, 7.5-10.9 s of system time; dropped
    every 256 MB, 1.3 s, and 4.1 s instead of 11.4 s of wall time; 2 GB read from the disk 3.6 s
    against 0.4 s dropped as read). Dropped pages are reused by the next write or read at once, so the
    page cache of a pass stays at a few windows instead of growing by every file the passes write. Where
    it cannot (tmpfs, other systems), nothing happens."""
    try:
        fd = f if isinstance(f, int) else f.fileno()
        if sync:
            if not isinstance(f, int):
                f.flush()
            os.fdatasync(fd)
        os.posix_fadvise(fd, offset, length, os.POSIX_FADV_DONTNEED)
    except (OSError, AttributeError, ValueError):
        pass


class PageDropper:
    """Counts the bytes written to ``f``; every ``DROP_BYTES`` writes them out and drops their pages."""

    def __init__(self, f):
        self.f, self.pending = f, 0

    def __call__(self, nbytes: int) -> None:
        self.pending += nbytes
        if self.pending >= DROP_BYTES:
            drop_pages(self.f, sync=True)
            self.pending = 0


def read_dropping(f, dtype, count: int) -> np.ndarray:
    """``np.fromfile(f, dtype, count)`` from ``f``'s position; when the read is large, the file's pages
    up to its end are dropped after (``drop_pages``): from the file's start, because the page cache holds
    files in folios of up to 2 MiB, which a range that starts inside one would leave in place."""
    start = f.tell()
    out = np.fromfile(f, dtype=dtype, count=count)
    if out.nbytes >= (1 << 20):
        drop_pages(f, 0, start + out.nbytes)
    return out


class NpyAppender:
    """Append 1-D chunks of one dtype to ``path`` (a ``.npy`` file); the header is fixed on ``close``.

    Written under ``<path>.partial`` and renamed on a clean close, so a killed pass leaves no file that
    looks complete. ``with NpyAppender(p, np.int64) as out: out.append(a); out.append(b)``.
    """

    def __init__(self, path: Path, dtype):
        self.path = Path(path)
        self.dtype = np.dtype(dtype)
        self.length = 0
        self._tmp = self.path.with_name(self.path.name + ".partial")
        self._file = open(self._tmp, "wb")
        self._file.write(b"\0" * _HEADER_SPACE)
        self._dropper = PageDropper(self._file)

    def append(self, values: np.ndarray) -> None:
        values = np.ascontiguousarray(values, dtype=self.dtype)
        self._file.write(memoryview(values.reshape(-1).view(np.uint8)))
        self.length += values.size
        self._dropper(values.nbytes)

    def close(self) -> Path:
        header = {"descr": np.lib.format.dtype_to_descr(self.dtype), "fortran_order": False,
                  "shape": (self.length,)}
        text = repr(header).encode("latin1")
        pad = _HEADER_SPACE - 10 - len(text) - 1
        if pad < 0:
            raise ValueError("npy header does not fit")
        self._file.seek(0)
        self._file.write(b"\x93NUMPY\x01\x00" + (_HEADER_SPACE - 10).to_bytes(2, "little") + text
                         + b" " * pad + b"\n")
        if self._dropper.pending >= (1 << 20):
            drop_pages(self._file, sync=True)  # the last window too, so a reader can drop what it reads
        self._file.close()
        os.replace(self._tmp, self.path)
        return self.path

    def abort(self) -> None:
        self._file.close()
        self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> "NpyAppender":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def current_rss_bytes() -> int:
    """This process's resident set size now (Linux ``/proc/self/statm``; 0 where it cannot be read)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return 0
    return pages * os.sysconf("SC_PAGE_SIZE")


def mapped_rss_bytes() -> int:
    """Resident bytes of this process's file-backed pages now (``RssFile`` in /proc/self/status; 0 where
    it cannot be read): what a memory-mapped model's pages add to RSS."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("RssFile:"):
                return int(line.split()[1]) << 10
    except (OSError, ValueError, IndexError):
        pass
    return 0


MIN_WORKING_BYTES = 32 << 20


def release_memory() -> None:
    """Give freed heap memory back to the OS (Arrow's memory pool, glibc ``malloc_trim``), so that RSS falls
    between pieces of work instead of staying at the largest piece's level."""
    try:
        import pyarrow

        pyarrow.default_memory_pool().release_unused()
    except (ImportError, AttributeError):
        pass
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def working_budget(total_bytes: int) -> int:
    """What the passes may use so that the whole process stays within ``total_bytes``: the budget less what
    the process already holds (interpreter, libraries, the caller's data), at least ``MIN_WORKING_BYTES``."""
    return max(MIN_WORKING_BYTES, int(total_bytes) - current_rss_bytes())


def write_npy(path: Path, values: np.ndarray) -> Path:
    """A whole (small) array through ``NpyAppender``: atomic like every other output of the passes."""
    with NpyAppender(path, np.asarray(values).dtype) as out:
        out.append(np.asarray(values))
    return Path(path)


class NpyFile:
    """Read-only access to a 1-D ``.npy`` file by slices (ordinary reads, no memory map)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        with open(self.path, "rb") as f:
            version = np.lib.format.read_magic(f)
            read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                           else np.lib.format.read_array_header_2_0)
            shape, fortran, dtype = read_header(f)
            self.offset = f.tell()
        if len(shape) != 1 or fortran:
            raise ValueError(f"{self.path}: expected a 1-D array")
        self.length = int(shape[0])
        self.dtype = np.dtype(dtype)

    def __len__(self) -> int:
        return self.length

    def read(self, lo: int = 0, hi: int | None = None) -> np.ndarray:
        hi = self.length if hi is None else min(int(hi), self.length)
        lo = max(0, int(lo))
        if hi <= lo:
            return np.zeros(0, dtype=self.dtype)
        with open(self.path, "rb") as f:
            f.seek(self.offset + lo * self.dtype.itemsize)
            return read_dropping(f, self.dtype, hi - lo)

    def chunks(self, size: int) -> Iterator[tuple[int, np.ndarray]]:
        """``(start, values)`` for consecutive slices of ``size`` elements."""
        size = max(1, int(size))
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            for lo in range(0, self.length, size):
                yield lo, read_dropping(f, self.dtype, min(size, self.length - lo))


def gather(table: NpyFile | np.ndarray, idx: np.ndarray, block: int) -> np.ndarray:
    """``table[idx]`` reading ``table`` in blocks of ``block`` elements (``idx`` any order, all in range).

    ``gather(t, [5, 0, 5], 4)`` reads ``t[0:4]`` then ``t[4:8]`` and returns ``[t[5], t[0], t[5]]``.
    """
    idx = np.asarray(idx, dtype=np.int64)
    if isinstance(table, np.ndarray):
        return table[idx]
    out = np.empty(idx.size, dtype=table.dtype)
    if idx.size == 0:
        return out
    order = np.argsort(idx, kind="stable")
    sorted_idx = idx[order]
    lo_block = int(sorted_idx[0]) // block
    hi_block = int(sorted_idx[-1]) // block
    for b in range(lo_block, hi_block + 1):
        start, stop = np.searchsorted(sorted_idx, [b * block, (b + 1) * block])
        if start == stop:
            continue
        values = table.read(b * block, (b + 1) * block)
        out[order[start:stop]] = values[sorted_idx[start:stop] - b * block]
    return out


def find_sorted(keys: NpyFile | np.ndarray, queries: np.ndarray, block: int) -> np.ndarray:
    """Positions of ``queries`` in the sorted distinct ``keys`` (every query must be present).

    Reads ``keys`` in blocks; each query is answered in the block whose key range holds it.
    """
    queries = np.asarray(queries, dtype=np.int64)
    if isinstance(keys, np.ndarray):
        return np.searchsorted(keys, queries)
    out = np.empty(queries.size, dtype=np.int64)
    if queries.size == 0:
        return out
    order = np.argsort(queries, kind="stable")
    sq = queries[order]
    done = 0
    for lo in range(0, len(keys), block):
        if done == sq.size:
            break
        values = keys.read(lo, lo + block)
        stop = done + int(np.searchsorted(sq[done:], values[-1], side="right"))
        if stop > done:
            out[order[done:stop]] = lo + np.searchsorted(values, sq[done:stop])
            done = stop
    return out


class SegmentSums:
    """Streamed ``np.bincount(rows, weights, minlength=size)`` for ``rows`` sorted ascending.

    Feed chunks with ``add(rows, weights)``; ``emit`` returns the sums of every row that is complete
    (below the last row seen), in row order and densely (rows without entries are 0), and ``finish``
    the rest up to ``size``. The open row's partial sum is carried into the next chunk as its first weight,
    so each sum is accumulated in exactly the order ``np.bincount`` uses.
    """

    def __init__(self, size: int):
        self.size = int(size)
        self.next_row = 0          # first row not yet emitted
        self.carry = 0.0           # partial sum of row ``next_row`` .. pending
        self.has_carry = False

    def add(self, rows: np.ndarray, weights: np.ndarray) -> np.ndarray:
        """Sums of rows ``[next_row, last row of this chunk)``: complete because ``rows`` is sorted."""
        rows = np.asarray(rows, dtype=np.int64)
        weights = np.asarray(weights, dtype=np.float64)
        if rows.size == 0:
            return np.zeros(0)
        base = self.next_row
        local = rows - base
        if self.has_carry:
            local = np.concatenate([[0], local])
            weights = np.concatenate([[self.carry], weights])
        sums = np.bincount(local, weights=weights, minlength=int(local[-1]) + 1)
        self.carry, self.has_carry = float(sums[-1]), True
        self.next_row = int(rows[-1])
        return sums[:-1]

    def finish(self) -> np.ndarray:
        rest = np.zeros(self.size - self.next_row)
        if self.has_carry and rest.size:
            rest[0] = self.carry
        self.next_row = self.size
        return rest
