"""The passes stream their files through a small page cache (``diskarray.drop_pages``): what a writer has
written out and what a reader has read are dropped, checked with mincore(2) on the real files."""

from __future__ import annotations

import ctypes
import mmap
import os

import numpy as np
import pytest

from arcore.ngram import diskarray
from arcore.ngram.diskarray import NpyAppender, NpyFile, drop_pages

PAGE = mmap.PAGESIZE


def cached_bytes(path) -> int:
    """Bytes of ``path`` in the page cache now (mincore over a read-only map of the whole file)."""
    size = os.path.getsize(path)
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
    libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_char_p]
    with open(path, "rb") as f:
        addr = libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, f.fileno(), 0)
    assert addr not in (None, ctypes.c_void_p(-1).value)
    try:
        vec = ctypes.create_string_buffer((size + PAGE - 1) // PAGE)
        assert libc.mincore(addr, size, vec) == 0, ctypes.get_errno()
        return sum(b & 1 for b in vec.raw) * PAGE
    finally:
        libc.munmap(addr, size)


@pytest.fixture
def droppable(tmp_path):
    """Skip where the file system keeps the pages anyway (tmpfs)."""
    probe = tmp_path / "probe.bin"
    with open(probe, "wb") as f:
        f.write(b"\1" * (1 << 20))
        drop_pages(f, sync=True)
    if cached_bytes(probe) > (1 << 19):
        pytest.skip("this file system does not drop clean pages on POSIX_FADV_DONTNEED (tmpfs)")
    return tmp_path


def test_appender_writes_out_and_drops_its_pages_every_drop_bytes(droppable, monkeypatch):
    monkeypatch.setattr(diskarray, "DROP_BYTES", 1 << 20)
    chunk = np.arange(1 << 17, dtype=np.int64)  # 1 MiB
    out = NpyAppender(droppable / "a.npy", np.int64)
    for _ in range(8):
        out.append(chunk)
    assert cached_bytes(out._tmp) <= 2 << 20  # at most the window not yet written out, not 8 MiB
    out.close()
    assert np.array_equal(np.load(droppable / "a.npy"), np.tile(chunk, 8))  # the data is all there

    plain = droppable / "plain.bin"
    with open(plain, "wb") as f:
        for _ in range(8):
            f.write(chunk.tobytes())
    assert cached_bytes(plain) >= 7 << 20  # without it the page cache holds the whole file


def test_reader_drops_what_it_read(droppable):
    values = np.arange(1 << 20, dtype=np.int64)  # 8 MiB
    path = droppable / "r.npy"
    with open(path, "wb") as f:
        np.save(f, values)
        f.flush()
        os.fsync(f.fileno())  # written out, as the passes' writers leave their files (dirty pages stay)
    assert cached_bytes(path) >= 7 << 20
    file = NpyFile(path)
    assert np.array_equal(np.concatenate([v for _, v in file.chunks(1 << 18)]), values)
    assert cached_bytes(path) <= 1 << 20  # each 2 MiB chunk dropped once read
