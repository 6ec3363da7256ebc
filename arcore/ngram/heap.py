"""Freed memory reused within a pass instead of returned to the kernel and faulted in again.

In: nothing (a context manager around the out-of-core passes, and ``diskarray.release_memory()`` between
them). Out: the same arrays, with fewer page faults.

Why: every chunk of a pass allocates arrays of tens to hundreds of MB and frees them. glibc serves a block
over its mmap threshold (at most 32 MiB) with a fresh ``mmap`` and unmaps it on free, so the next chunk's
arrays are new pages again: the kernel zeroes and maps every page once per chunk, and on a VM whose
free memory goes back to the host each first touch is slower still. Measured here, 10 arrays of 300 MB
allocated, filled and freed one after another: 0.90 s of system time, 6,622 faults; with the thresholds
raised, 0.03 s and 651. The n-gram stage's system time at 1 GB of text fell from 151.5 to 127.6 s.

How: ``reuse_freed_memory()`` raises glibc's mmap and trim thresholds (``mallopt``) so large blocks come
from the heap and stay there when freed, where the next chunk's equal-sized arrays find them.
``diskarray.release_memory()`` (``malloc_trim(0)``) gives the free pages back to the kernel; the passes
call it at the end of each pass, so memory a pass no longer needs is never held by the next one, and the
peak stays the largest pass's working set, as with mmap. On exit the thresholds go back to glibc's largest dynamic
values (32 MiB, 64 MiB) and the free pages are released. Other C libraries (musl) and other systems:
both are no-ops.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from contextlib import contextmanager
from functools import lru_cache
from typing import Iterator, Optional

from arcore.ngram.diskarray import release_memory

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # malloc.h
_RETAIN = 1 << 30  # blocks up to 1 GiB come from the heap while reuse is on
_DEFAULT_MMAP, _DEFAULT_TRIM = 32 << 20, 64 << 20  # glibc's dynamic thresholds at their largest


@lru_cache(maxsize=1)
def _glibc() -> Optional[ctypes.CDLL]:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
        libc.mallopt, libc.malloc_trim  # noqa: B018 (glibc has both; musl lacks mallopt)
    except (OSError, AttributeError):
        return None
    return libc


_depth = 0


@contextmanager
def reuse_freed_memory() -> Iterator[None]:
    """Large blocks come from the heap and are reused while the block runs (see the module docstring)."""
    global _depth
    libc = _glibc()
    if libc is None:
        yield
        return
    if _depth == 0:
        libc.mallopt(_M_MMAP_THRESHOLD, ctypes.c_int(_RETAIN))
        libc.mallopt(_M_TRIM_THRESHOLD, ctypes.c_int(_RETAIN))
    _depth += 1
    try:
        yield
    finally:
        _depth -= 1
        if _depth == 0:
            libc.mallopt(_M_MMAP_THRESHOLD, ctypes.c_int(_DEFAULT_MMAP))
            libc.mallopt(_M_TRIM_THRESHOLD, ctypes.c_int(_DEFAULT_TRIM))
            release_memory()
