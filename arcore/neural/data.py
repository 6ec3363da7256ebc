"""The token stream a neural model trains on: a flat id file, memory-mapped, read as BPTT windows.

Input: a split's token ids in the shard layout (documents back to back, each ending with ``</s>``), either
as a flat ``.npy`` written once from the shards (``read_split_tokens``: uint16/uint32 as stored, written
shard by shard, never held whole in memory) and memory-mapped (``TokenFile.open``), or as any in-memory
1-D array. Output: ``TokenStreams``, word_language_model's ``batchify`` layout as a *view* of those ids,
and its windows as int64 tensors: only a window is ever converted to int64, never the corpus.

The layout, word_language_model's ``batchify``: ``n_rows = len(ids) // streams``; stream (column) ``s``
is the contiguous slice ``ids[s * n_rows : (s + 1) * n_rows]``; the tail ``len(ids) % streams`` is
dropped. Window ``w`` with ``bptt``: ``i = w * bptt``, ``L = min(bptt, n_rows - 1 - i)``, inputs rows
``i .. i+L-1``, targets rows ``i+1 .. i+L``. So row ``t`` of stream ``s`` is ``ids[s * n_rows + t]``, and
a window is ``L + 1`` consecutive ids of each stream: the memory map is sliced, not copied. The hidden
state left by one window is the right initial state for the next, because each column continues where it
stopped. Worked example, ids ``0..9`` in 2 streams with bptt 2::

    batchify([0..9], 2) -> [[0, 5],        windows: rows 0-1 -> targets rows 1-2
                            [1, 6],                 rows 2-3 -> targets rows 3-4
                            [2, 7],                 (the last row is only a target)
                            [3, 8],
                            [4, 9]]

Data parallel training gives rank ``r`` of ``world`` the columns ``[r*batch, (r+1)*batch)`` of the layout
with ``batch * world`` streams: each rank reads its own streams, and all ranks make the same number of
steps.

Memory: a window reads ``(L + 1) x batch`` ids through the map. The map is reopened every
``REOPEN_WINDOWS`` windows, so pages already read leave the process instead of accumulating over an epoch:
resident memory stays what a few windows touch, whatever the corpus size. ``scan_ids`` (range check and
the sha256 a checkpoint records) reads the file in bounded chunks with plain reads, not through the map.

``batchify``/``get_window``/``n_windows`` on torch tensors are the materialized form of the same layout
(word_language_model's code, kept as the reference the windows are tested against and for small data).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Optional, Union

import numpy as np
import torch

from arcore.errors import InputError, StageError
from arcore.io import atomic_write_with

REOPEN_WINDOWS = 1024
SCAN_CHUNK = 1 << 22  # ids per chunk when scanning a split: 32 MB as int64


@dataclass(frozen=True)
class TokenFile:
    """A flat ``.npy`` of token ids (uint16/uint32), read through a memory map or in chunks."""

    path: Path

    def _header(self) -> tuple[int, np.dtype, int]:
        with open(self.path, "rb") as f:
            version = np.lib.format.read_magic(f)
            read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, fortran, dtype = read(f)
            if len(shape) != 1 or fortran:
                raise StageError(f"{self.path} is not a flat id array; delete it to rebuild it from the shards")
            return shape[0], dtype, f.tell()

    def __len__(self) -> int:
        return self._header()[0]

    @property
    def dtype(self) -> np.dtype:
        return self._header()[1]

    def open(self) -> np.ndarray:
        """The ids as a read-only memory map."""
        return np.load(self.path, mmap_mode="r")

    def chunks(self, size: int = SCAN_CHUNK) -> Iterator[np.ndarray]:
        """The ids in order, ``size`` at a time, by plain reads (the page cache, not this process, holds them)."""
        n, dtype, offset = self._header()
        with open(self.path, "rb") as f:
            f.seek(offset)
            for _ in range(0, n, size):
                yield np.fromfile(f, dtype=dtype, count=size)


Ids = Union[np.ndarray, TokenFile]


def write_token_file(parts: Iterable[np.ndarray], path: Path, dtype: str, tokens: int) -> TokenFile:
    """Write the ``tokens`` ids arriving in ``parts`` as one flat ``.npy`` of ``dtype``, atomically.

    Memory: one part at a time. The count is checked against ``tokens`` (the manifest's) before the file
    is renamed into place, so a file at ``path`` is always complete.
    """
    dt = np.dtype(dtype)

    def write(f) -> None:
        np.lib.format.write_array_header_1_0(
            f, {"descr": np.lib.format.dtype_to_descr(dt), "fortran_order": False, "shape": (int(tokens),)})
        written = 0
        for part in parts:
            part = np.ascontiguousarray(part, dtype=dt)
            f.write(memoryview(part).cast("B"))
            written += part.size
        if written != tokens:
            raise StageError(f"{path.name}: the shards held {written} ids, their manifest says {tokens}; "
                             "rerun the shards stage")

    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_with(path, write)
    return TokenFile(path)


def read_split_tokens(shards_dir: Path, split: str, work_dir: Path, tokenizer_sha256: Optional[str] = None) -> TokenFile:
    """The split's ids as ``<work_dir>/<split>.ids.npy``, written from the shards on first use (checked
    shard by shard) and reused afterwards, e.g. by a training run relaunched after a kill."""
    from arcore.shards.manifest import load_complete_manifest
    from arcore.shards.reader import iter_shard_ids

    manifest = load_complete_manifest(shards_dir, split, tokenizer_sha256)
    path = Path(work_dir) / f"{split}.ids.npy"
    if path.exists():
        existing = TokenFile(path)
        if len(existing) == manifest.tokens and existing.dtype == np.dtype(manifest.dtype):
            return existing
    return write_token_file(iter_shard_ids(shards_dir, split, tokenizer_sha256), path, manifest.dtype, manifest.tokens)


def id_chunks(ids: Ids, size: int = SCAN_CHUNK) -> Iterator[np.ndarray]:
    """``ids`` in order, at most ``size`` at a time (file reads for a ``TokenFile``, views otherwise)."""
    if isinstance(ids, TokenFile):
        yield from ids.chunks(size)
        return
    ids = np.asarray(ids)
    for start in range(0, len(ids), size):
        yield ids[start : start + size]


def scan_ids(ids: Ids, digest: Optional["hashlib._Hash"] = None) -> tuple[int, int]:
    """``(min, max)`` of ``ids`` (``(0, -1)`` when empty), feeding their int64 bytes to ``digest`` on the way.

    The digest equals ``sha256(ids.astype(np.int64).tobytes())`` of the whole array, computed a chunk at a
    time: a checkpoint written before the data path streamed resumes under the same data digest.
    """
    low, high = None, None
    for chunk in id_chunks(ids):
        if digest is not None:
            digest.update(chunk.astype(np.int64).tobytes())
        if chunk.size:
            low = int(chunk.min()) if low is None else min(low, int(chunk.min()))
            high = int(chunk.max()) if high is None else max(high, int(chunk.max()))
    return (0, -1) if low is None else (low, high)


class TokenStreams:
    """word_language_model's ``batchify`` layout over a flat id array, as a view: ``(n_rows, batch)``.

    ``TokenStreams(np.arange(10), 2).rows(0, 5).tolist() -> [[0, 5], [1, 6], [2, 7], [3, 8], [4, 9]]``.
    ``setting`` names the config key to lower in the error for too little text.
    """

    def __init__(self, ids: Ids, batch_size: int, *, rank: int = 0, world_size: int = 1,
                 setting: str = "rnn.batch_size"):
        if not isinstance(ids, TokenFile):
            ids = np.asarray(ids)
            if ids.ndim != 1:
                raise InputError(f"token ids must be a flat 1-D array, got shape {ids.shape}")
        streams = batch_size * world_size
        n_rows = len(ids) // streams
        if n_rows < 2:
            raise InputError(
                f"{len(ids)} tokens are too few for {streams} streams (need at least {2 * streams}); "
                f"lower {setting} or provide more text"
            )
        self.n_rows, self.batch = n_rows, batch_size
        self._source, self._streams, self._first = ids, streams, rank * batch_size
        self._reads = 0
        self._layout = self._map()

    @classmethod
    def of_rows(cls, rows: Union[np.ndarray, torch.Tensor]) -> "TokenStreams":
        """Windows over an already materialized ``(n_rows, batch)`` layout (``batchify``'s tensor)."""
        self = cls.__new__(cls)
        layout = rows.detach().cpu().numpy() if isinstance(rows, torch.Tensor) else np.asarray(rows)
        self.n_rows, self.batch = layout.shape
        self._source, self._streams, self._first, self._reads, self._layout = None, self.batch, 0, 0, layout
        return self

    def _map(self) -> np.ndarray:
        ids = self._source.open() if isinstance(self._source, TokenFile) else self._source
        by_stream = ids[: self.n_rows * self._streams].reshape(self._streams, self.n_rows)
        return by_stream[self._first : self._first + self.batch].T

    @property
    def shape(self) -> tuple[int, int]:
        return self.n_rows, self.batch

    def rows(self, start: int, stop: int) -> np.ndarray:
        """Rows ``start .. stop-1`` of the layout as a C-contiguous int64 array (the only copy made)."""
        self._reads += 1
        if isinstance(self._source, TokenFile) and self._reads % REOPEN_WINDOWS == 0:
            self._layout = self._map()  # drop the old map and the pages it has read
        return np.array(self._layout[start:stop], dtype=np.int64, order="C")

    def window(self, index: int, bptt: int, device: Optional[torch.device] = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Window ``index``: inputs rows ``i .. i+L-1`` and targets rows ``i+1 .. i+L``, ``i = index * bptt``."""
        i = index * bptt
        seq_len = min(bptt, self.n_rows - 1 - i)
        block = torch.from_numpy(self.rows(i, i + seq_len + 1))
        if device is not None:
            block = block.to(device)
        return block[:-1], block[1:]


def as_streams(data: Union[TokenStreams, torch.Tensor, np.ndarray]) -> TokenStreams:
    """``data`` itself, or streams over a materialized ``(n_rows, batch)`` layout."""
    return data if isinstance(data, TokenStreams) else TokenStreams.of_rows(data)


def batchify(ids: np.ndarray, batch_size: int, *, rank: int = 0, world_size: int = 1,
             setting: str = "rnn.batch_size") -> torch.Tensor:
    """The layout materialized, as word_language_model builds it: this rank's ``(n_rows, batch)`` int64 tensor.

    The tail that does not fill a whole row is dropped (at most ``batch_size * world_size - 1`` tokens).

    >>> batchify(np.arange(10), 2)[:, 1].tolist()
    [5, 6, 7, 8, 9]
    """
    ids = np.asarray(ids)
    if ids.ndim != 1:
        raise InputError(f"token ids must be a flat 1-D array, got shape {ids.shape}")
    streams = batch_size * world_size
    n_rows = len(ids) // streams
    if n_rows < 2:
        raise InputError(
            f"{len(ids)} tokens are too few for {streams} streams (need at least {2 * streams}); "
            f"lower {setting} or provide more text"
        )
    data = torch.from_numpy(ids[: n_rows * streams].astype(np.int64)).view(streams, n_rows).t()
    return data[:, rank * batch_size : (rank + 1) * batch_size].contiguous()


def n_windows(data: Union[TokenStreams, torch.Tensor], bptt: int) -> int:
    """Number of windows ``range(0, n_rows - 1, bptt)`` yields (the last may be shorter than bptt)."""
    return (data.shape[0] - 1 + bptt - 1) // bptt


def get_window(data: torch.Tensor, index: int, bptt: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Window ``index`` of a materialized layout: ``data[i:i+L]`` and ``data[i+1:i+1+L]``, ``i = index * bptt``."""
    i = index * bptt
    seq_len = min(bptt, data.size(0) - 1 - i)
    return data[i : i + seq_len], data[i + 1 : i + 1 + seq_len]


def check_window_fits(data: Union[TokenStreams, torch.Tensor], bptt: int, what: str, section: str = "rnn") -> None:
    """Refuse a stream shorter than one full BPTT window (training on it would silently do nothing useful)."""
    if data.shape[0] - 1 < bptt:
        window = "bptt" if section == "rnn" else "context"
        raise InputError(
            f"the {what} split gives {data.shape[0]} tokens per stream, shorter than one BPTT window "
            f"of {bptt} + 1; lower {section}.{window} or {section}.batch_size, or provide more text"
        )
