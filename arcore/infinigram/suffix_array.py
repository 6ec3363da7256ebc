"""Suffix arrays over token ids: the index the infini-gram model counts with (Liu et al. 2024, sec. 3).

Input: a flat array of token ids (non-negative ints). Output: ``sa``, the start positions of all suffixes
in lexicographic order of their token sequences (a shorter suffix sorts before every extension of it).
Every occurrence of a token sequence ``x`` is the start of a suffix that begins with ``x``, and those
suffixes are adjacent in ``sa``: ``count(x)`` is the size of that range, found by binary search.

Worked example: ``ids = [3, 1, 2, 3, 1, 2, 0]``; suffixes sorted: ``[0]`` (6), ``[1,2,0]`` (4),
``[1,2,3,1,2,0]`` (1), ``[2,0]`` (5), ``[2,3,1,2,0]`` (2), ``[3,1,2,0]`` (3), ``[3,1,2,3,1,2,0]`` (0), so
``sa = [6, 4, 1, 5, 2, 3, 0]``; ``[1, 2]`` occupies ``sa[1:3]``: count 2; ``[2, 3]`` occupies ``sa[4:5]``.

Two builders, the same array:
- ``build_suffix_array``: libdivsufsort (``pydivsufsort``), made for it: O(N log N) worst case, about 5N
  bytes of work space on top of its output. It sorts bytes, so the ids are written big-endian in the
  fewest bytes that hold the vocabulary (2 for V <= 65536): byte order then equals token order, and the
  token suffixes are the suffixes starting at multiples of the width (filtered in chunks, so the peak is
  the byte array, its byte-level array and the result).
- ``prefix_doubling_suffix_array``: Manber & Myers (1993) prefix doubling in numpy (rank pairs sorted
  with ``np.lexsort`` each round, ``log2`` of the longest repeat rounds): the baseline it is measured
  against (``benchmarks/infinigram.py``) and a cross-check in the tests.
"""

from __future__ import annotations

import numpy as np

from arcore.errors import InputError

# Token suffixes are picked out of the byte-level array this many entries at a time (bounds the temporaries).
FILTER_CHUNK = 1 << 22


def _byte_width(max_id: int) -> int:
    return 1 if max_id < 1 << 8 else 2 if max_id < 1 << 16 else 4


def suffix_array_dtype(n: int) -> np.dtype:
    """int32 while positions fit (n < 2**31), else int64."""
    return np.dtype(np.int32 if n < 2**31 else np.int64)


def _check_ids(ids: np.ndarray) -> np.ndarray:
    ids = np.asarray(ids).ravel()
    if ids.dtype.kind not in "iu":
        raise InputError(f"a suffix array needs integer token ids, got dtype {ids.dtype}")
    if ids.size and int(ids.min()) < 0:
        raise InputError("a suffix array needs non-negative token ids")
    return ids


def build_suffix_array(ids: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """The suffix array of ``ids`` with libdivsufsort; written into ``out`` (e.g. a memory map) if given.

    ``build_suffix_array(np.array([3, 1, 2, 3, 1, 2, 0])) -> [6, 4, 1, 5, 2, 3, 0]``
    """
    from pydivsufsort import divsufsort

    ids = _check_ids(ids)
    n = ids.size
    if out is None:
        out = np.empty(n, dtype=suffix_array_dtype(n))
    if out.shape != (n,):
        raise ValueError(f"out has shape {out.shape}, expected ({n},)")
    if n == 0:
        return out
    width = _byte_width(int(ids.max()))
    data = ids.astype(f">u{width}", copy=False).view(np.uint8) if width > 1 else ids.astype(np.uint8, copy=False)
    byte_sa = divsufsort(np.ascontiguousarray(data))  # positions of all n * width byte suffixes
    del data
    if width == 1:
        out[:] = byte_sa
        return out
    pos = 0
    for start in range(0, byte_sa.size, FILTER_CHUNK):
        block = byte_sa[start:start + FILTER_CHUNK]
        keep = block[block % width == 0] // width
        out[pos:pos + keep.size] = keep
        pos += keep.size
    if pos != n:
        raise RuntimeError(f"libdivsufsort returned {pos} token suffixes for {n} ids")
    return out


def prefix_doubling_suffix_array(ids: np.ndarray) -> np.ndarray:
    """The same array by prefix doubling: after round r, suffixes are ranked by their first 2**r tokens.

    Each round sorts the pairs (rank[i], rank[i + h]) (-1 past the end: shorter first) and re-ranks;
    it stops when all ranks are distinct.
    """
    ids = _check_ids(ids)
    n = ids.size
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    rank = np.unique(ids, return_inverse=True)[1].astype(np.int64)
    h = 1
    while True:
        second = np.full(n, -1, dtype=np.int64)
        second[:n - h] = rank[h:] if h < n else second[:0]
        order = np.lexsort((second, rank))
        first_s, second_s = rank[order], second[order]
        new_group = np.ones(n, dtype=bool)
        new_group[1:] = (first_s[1:] != first_s[:-1]) | (second_s[1:] != second_s[:-1])
        new_rank = np.cumsum(new_group) - 1
        rank = np.empty(n, dtype=np.int64)
        rank[order] = new_rank
        if new_rank[-1] == n - 1:
            return order.astype(np.int64)
        h *= 2


def brute_force_suffix_array(ids) -> np.ndarray:
    """Sorting the suffixes as Python tuples: O(N^2 log N), for tests on a few hundred tokens."""
    ids = [int(x) for x in ids]
    return np.array(sorted(range(len(ids)), key=lambda i: ids[i:]), dtype=np.int64)
