"""Atomic file writes and content digests.

Every file a stage writes that another process may read goes through ``atomic_write_*``: the bytes go to
a temporary name in the same directory, are fsynced, then ``os.replace``d over the target, so a reader sees
the old file or the new one, never half of one, even if the writer is killed.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import BinaryIO, Callable, Iterable

CHUNK = 1 << 20


def atomic_write_with(path: Path, write: Callable[[BinaryIO], None], sync_dir: bool = False) -> None:
    """Call ``write(f)`` on a temporary file beside ``path``, fsync, rename over ``path``.

    ``sync_dir`` also fsyncs the directory, so the rename itself survives a power loss (checkpoints)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the usual mode
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    if sync_dir:
        fsync_dir(path.parent)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    atomic_write_with(path, lambda f: f.write(data))


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def digest_strings(parts: Iterable[str]) -> str:
    """SHA-256 of the parts joined unambiguously (each length-prefixed)."""
    h = hashlib.sha256()
    for p in parts:
        b = p.encode("utf-8")
        h.update(len(b).to_bytes(8, "big"))
        h.update(b)
    return h.hexdigest()


class DigestCache:
    """sha256 of files, remembered by (path, size, mtime_ns) so unchanged inputs are not re-read.

    Stored as JSON at ``path``; a stale or unreadable cache only costs a re-hash.
    """

    def __init__(self, path: Path):
        self.path = Path(path)
        try:
            self.entries: dict = json.loads(self.path.read_text())
        except (OSError, ValueError):
            self.entries = {}
        self.dirty = False

    def sha256(self, file: Path) -> str:
        st = os.stat(file)
        key = str(Path(file).resolve())
        stamp = [st.st_size, st.st_mtime_ns]
        hit = self.entries.get(key)
        if hit and hit[:2] == stamp:
            return hit[2]
        digest = sha256_file(file)
        self.entries[key] = stamp + [digest]
        self.dirty = True
        return digest

    def save(self) -> None:
        if self.dirty:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(self.path, json.dumps(self.entries))
            self.dirty = False
