"""arcore.ngram.heap: large freed blocks are kept and reused inside the block, given back at its end."""

from __future__ import annotations

import numpy as np

from arcore.ngram.heap import reuse_freed_memory

SIZE = 64 << 20  # over glibc's largest dynamic mmap threshold (32 MiB): normally a map of its own


def _rss() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) << 10 for line in f if line.startswith("VmRSS:"))


def _touch_and_free() -> None:
    a = np.empty(SIZE, dtype=np.uint8)
    a[:] = 1  # every page resident
    del a


def test_freed_blocks_are_kept_for_the_next_array_then_released():
    start = _rss()
    _touch_and_free()
    assert _rss() < start + SIZE // 4  # glibc's usual way: the block's map went back to the kernel
    with reuse_freed_memory():
        _touch_and_free()
        assert _rss() >= start + SIZE // 2  # kept: the next array of this size finds its pages
        for _ in range(5):
            _touch_and_free()
        assert _rss() < start + SIZE + SIZE // 2  # five more arrays reused those pages, took no new ones
    assert _rss() < start + SIZE // 4  # the end of the block gave the free pages back
    _touch_and_free()
    assert _rss() < start + SIZE // 4  # and glibc maps big blocks again
