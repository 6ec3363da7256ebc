"""Binary n-gram models: memory-mapped arrays per order plus a prebuilt probing table, written as a stream.

Input: ``BinaryModelWriter.append`` receives each order's arrays in chunks, orders 1, 2, ..., N, chunks of
an order in increasing key order (what the out-of-core estimators stream; ``save_binary`` feeds an
in-memory ``BackoffModel`` through the same path). Output: a directory that ``load_binary`` maps
read-only into a ``BackoffModel`` in milliseconds, whatever the model's size, because nothing is parsed
or built at load (KenLM's binary probing format is the anchor)::

    <dir>/order1.logprob.npy       float64 (V,)      natural log, dense over the vocabulary (row = id)
    <dir>/order1.logbackoff.npy    float64 (V,)
    <dir>/order1.extends.npy       bool (V,)         whether the id is the first word of a stored bigram
    <dir>/order{n}.keys.npy        int64 (m_n,)      row(prefix) * V + word, sorted (n >= 2), as BackoffModel
    <dir>/order{n}.logprob.npy     float64 (m_n,)
    <dir>/order{n}.logbackoff.npy  float64 (m_n,)    orders n < N (order N's backoffs are zero)
    <dir>/order{n}.table.npy       probing.SLOT      KeyHash slots (hash, row or ~row, logprob, logbackoff)
    <dir>/meta.json                written last: format, version, name, order, vocab_size, special ids,
                                   num_ngrams, home buckets per table, byte size of every file, info

Every file is an ordinary ``.npy`` (``np.load(..., mmap_mode="r")`` reads it). Arrays are appended chunk
by chunk behind a fixed 256-byte header whose shape is patched at close, so no order is ever held whole.
Tables are built at close in ``memory_budget_bytes`` (``probing.write_table``). Completeness: the writer
works in ``<dir>.partial`` and renames it to ``<dir>`` after meta.json is written; a directory without
meta.json, with a ``.partial`` name, or whose files do not have the recorded sizes is refused at load.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np

from arcore.errors import InputError, StageError
from arcore.ngram.backoff import BackoffModel
from arcore.ngram.diskarray import PageDropper, release_memory
from arcore.ngram.probing import SLOT, KeyHash, RecordSource, num_buckets, read_npy, write_table

FORMAT, VERSION = "arpipe-ngram-binary", 3  # 2: two-slot buckets at load 1/2; 3: ~row for non-prefixes
PARTIAL = ".partial"
HEADER_BYTES = 256  # fixed .npy header (magic, version, length, dict padded with spaces): shape patched in place
_CHUNK = 1 << 20  # rows per append when saving an in-memory model


def _npy_header(dtype: np.dtype, length: int) -> bytes:
    body = repr({"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False,
                 "shape": (int(length),)})
    body = body.ljust(HEADER_BYTES - 10 - 1) + "\n"
    return b"\x93NUMPY\x01\x00" + len(body).to_bytes(2, "little") + body.encode("latin1")


class _NpyAppender:
    """A 1-D ``.npy`` file written chunk by chunk with ordinary writes; the header is patched at close."""

    def __init__(self, path: Path, dtype):
        self.path, self.dtype, self.length = path, np.dtype(dtype), 0
        self.file = open(path, "wb")
        self.file.write(_npy_header(self.dtype, 0))
        self.dropper = PageDropper(self.file)  # written out as it goes, its pages reused (drop_pages)

    def write(self, values: np.ndarray) -> None:
        values = np.ascontiguousarray(values, dtype=self.dtype)
        self.file.write(memoryview(values.view(np.uint8)))
        self.length += values.size
        self.dropper(values.nbytes)

    def close(self, length: int | None = None) -> None:
        self.length = self.length if length is None else length
        self.file.seek(0)
        self.file.write(_npy_header(self.dtype, self.length))
        self.file.flush()
        os.fsync(self.file.fileno())
        self.file.close()


class BinaryModelWriter:
    """Streams a backoff model into the directory layout of the module docstring; a context manager.

    ``with BinaryModelWriter(d, name=..., order=3, ...) as w: w.append(1, None, lp1, bo1); ...;
    w.close(info)``. Leaving the block by an exception removes the partial directory.
    """

    def __init__(self, directory: Path, *, name: str, order: int, vocab_size: int, bos_id: int, eos_id: int,
                 unk_id: int | None, memory_budget_bytes: int = 256 << 20):
        if order < 1 or vocab_size < 1:
            raise InputError(f"a binary n-gram model needs order >= 1 and vocab_size >= 1 (got {order}, "
                             f"{vocab_size})")
        self.directory = Path(directory)
        self.partial = self.directory.with_name(self.directory.name + PARTIAL)
        self.meta = {"format": FORMAT, "version": VERSION, "name": name, "order": int(order),
                     "vocab_size": int(vocab_size), "bos_id": int(bos_id), "eos_id": int(eos_id),
                     "unk_id": None if unk_id is None else int(unk_id)}
        self.memory_budget_bytes = int(memory_budget_bytes)
        shutil.rmtree(self.partial, ignore_errors=True)
        self.partial.mkdir(parents=True)
        self.num_ngrams: list[int] = []
        self._files: dict[str, _NpyAppender] = {}
        self._last_key = -1
        self._closed = False

    def __enter__(self) -> "BinaryModelWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.abort()

    def abort(self) -> None:
        """Drop everything written so far (nothing that looks complete remains)."""
        for f in self._files.values():
            f.file.close()
        self._files = {}
        self._closed = True
        shutil.rmtree(self.partial, ignore_errors=True)

    # ----- streaming the orders ----------------------------------------------------------------------
    def append(self, n: int, keys: np.ndarray | None, logprob: np.ndarray, logbackoff: np.ndarray | None) -> None:
        """Next chunk of order n (orders strictly 1, 2, ..., N; chunks of an order in increasing key order).

        Order 1 is dense over the vocabulary (row = id): keys None, total length vocab_size over its chunks.
        Order n >= 2: keys int64 ``row(prefix) * vocab_size + word`` exactly as BackoffModel.keys (sorted,
        distinct), logprob natural log float64, logbackoff natural log float64 (None for order N = zeros).
        An order without n-grams may be skipped."""
        if self._closed:
            raise InputError("append after close(): the binary model is already written")
        current = len(self.num_ngrams)
        if n != current and not (current < n <= self.meta["order"]):
            raise InputError(f"binary model orders must come as 1, 2, ..., {self.meta['order']}: got order "
                             f"{n} after order {current}")
        while len(self.num_ngrams) < n:
            self._start_order(len(self.num_ngrams) + 1)
        logprob = np.asarray(logprob, dtype=np.float64)
        top = n == self.meta["order"]
        if logbackoff is None:
            logbackoff = np.zeros(logprob.size)
        logbackoff = np.asarray(logbackoff, dtype=np.float64)
        if logbackoff.shape != logprob.shape or logprob.ndim != 1:
            raise InputError(f"order {n}: logprob and logbackoff must be 1-D of one length (got "
                             f"{logprob.shape}, {logbackoff.shape})")
        if n == 1:
            if keys is not None:
                raise InputError("order 1 is dense over the vocabulary: pass keys=None")
        else:
            keys = self._checked_keys(n, keys, logprob.size)
            self._files["keys"].write(keys)
        self._files["logprob"].write(logprob)
        if not top:
            self._files["logbackoff"].write(logbackoff)
        self.num_ngrams[-1] += logprob.size

    def _checked_keys(self, n: int, keys, size: int) -> np.ndarray:
        keys = np.asarray(keys)
        if keys.dtype != np.int64 or keys.shape != (size,):
            raise InputError(f"order {n}: keys must be int64 with one per logprob (got {keys.dtype} "
                             f"{keys.shape} for {size})")
        if size:
            limit = self.num_ngrams[n - 2] * self.meta["vocab_size"]  # prefix rows of order n-1
            if keys[0] <= self._last_key or np.any(keys[1:] <= keys[:-1]) or keys[-1] >= limit:
                raise InputError(f"order {n}: keys must be distinct, increasing across chunks, and "
                                 f"< rows(order {n - 1}) * vocab_size = {limit}")
            self._last_key = int(keys[-1])
        return keys

    def _start_order(self, n: int) -> None:
        self._finish_order()
        self.num_ngrams.append(0)
        self._last_key = -1
        names = (["keys"] if n >= 2 else []) + ["logprob"] + (["logbackoff"] if n < self.meta["order"] else [])
        self._files = {k: _NpyAppender(self.partial / f"order{n}.{k}.npy", np.int64 if k == "keys" else np.float64)
                       for k in names}

    def _finish_order(self) -> None:
        for f in self._files.values():
            f.close()
        self._files = {}
        if len(self.num_ngrams) == 1 and self.num_ngrams[0] != self.meta["vocab_size"]:
            raise InputError(f"order 1 must have one entry per id: got {self.num_ngrams[0]} for vocab_size "
                             f"{self.meta['vocab_size']}")

    # ----- finishing ---------------------------------------------------------------------------------
    def close(self, info: dict | None = None) -> Path:
        """Builds the per-order lookup tables within memory_budget_bytes, writes meta.json LAST, and makes
        the directory complete atomically (write under a partial name, rename). Returns the directory."""
        try:
            if self._closed:
                raise InputError("close() called twice on a BinaryModelWriter")
            if not self.num_ngrams:
                raise InputError("a binary model needs order 1 (the dense unigram table) before close()")
            while len(self.num_ngrams) < self.meta["order"]:
                self._start_order(len(self.num_ngrams) + 1)
            self._finish_order()
            self._closed = True
            if self.meta["order"] >= 2:
                self._write_unigram_extends()
            tables = {str(n): self._write_table(n) for n in range(2, self.meta["order"] + 1)}
            files = {p.name: p.stat().st_size for p in sorted(self.partial.iterdir())}
            meta = dict(self.meta, num_ngrams=self.num_ngrams, tables=tables, files=files, info=info or {})
            with open(self.partial / "meta.json", "w") as f:
                json.dump(meta, f, indent=1)
                f.flush()
                os.fsync(f.fileno())
            self._publish()
        except BaseException:
            self.abort()
            raise
        return self.directory

    def _write_table(self, n: int) -> dict:
        m, top = self.num_ngrams[n - 1], n == self.meta["order"]
        path = lambda k, n=n: self.partial / f"order{n}.{k}.npy"  # noqa: E731
        source = RecordSource(path("keys"), path("logprob"), None if top else path("logbackoff"), m, HEADER_BYTES,
                              None if top else path("keys", n + 1), 0 if top else self.num_ngrams[n],
                              self.meta["vocab_size"])
        table = _NpyAppender(path("table"), SLOT)
        length = write_table(table.file, source, self.memory_budget_bytes, self.partial, table.dropper)
        table.close(length)
        release_memory()  # the next order's table reuses nothing of this one's partitions
        return {"num_buckets": num_buckets(m), "slots": length}

    def _write_unigram_extends(self, block: int = 1 << 20) -> None:
        """``order1.extends.npy``: which ids are the first word of a stored bigram (bigram keys streamed)."""
        V, m2 = self.meta["vocab_size"], self.num_ngrams[1]
        flags = np.zeros(V, dtype=bool)
        for lo in range(0, m2, block):
            flags[read_npy(self.partial / "order2.keys.npy", HEADER_BYTES, "<i8", lo, min(m2, lo + block)) // V] = True
        out = _NpyAppender(self.partial / "order1.extends.npy", bool)
        out.write(flags)
        out.close()

    def _publish(self) -> None:
        old = self.directory.with_name(f"{self.directory.name}.old-{os.getpid()}")
        if self.directory.exists():
            os.replace(self.directory, old)
        os.replace(self.partial, self.directory)
        shutil.rmtree(old, ignore_errors=True)
        fd = os.open(self.directory.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def save_binary(model: BackoffModel, directory: Path, memory_budget_bytes: int = 256 << 20) -> Path:
    """An in-memory (or mapped) ``model`` through ``BinaryModelWriter``, order by order in chunks."""
    with BinaryModelWriter(directory, name=model.name, order=model.order, vocab_size=model.vocab_size,
                           bos_id=model.bos_id, eos_id=model.eos_id, unk_id=model.unk_id,
                           memory_budget_bytes=memory_budget_bytes) as writer:
        for n in range(1, model.order + 1):
            size = len(model.logprob[n - 1])
            for lo in range(0, max(size, 1), _CHUNK):
                hi = min(size, lo + _CHUNK)
                keys = None if n == 1 else np.asarray(model.keys[n - 1][lo:hi], dtype=np.int64)
                writer.append(n, keys, model.logprob[n - 1][lo:hi],
                              None if n == model.order else model.logbackoff[n - 1][lo:hi])
        return writer.close(model.info)


def is_binary_model(directory: Path) -> bool:
    """Whether ``directory`` holds a complete binary model of this format."""
    directory = Path(directory)
    try:
        meta = json.loads((directory / "meta.json").read_text())
    except (OSError, ValueError):
        return False
    return not directory.name.endswith(PARTIAL) and meta.get("format") == FORMAT


def _refuse(directory: Path, why: str) -> StageError:
    return StageError(f"{directory} is not a complete binary n-gram model ({why}); rerun the ngram stage "
                      "to write it again")


def load_binary(directory: Path) -> BackoffModel:
    """Map a binary model read-only (no parsing or table building: milliseconds for any size)."""
    directory = Path(directory)
    if directory.name.endswith(PARTIAL):
        raise _refuse(directory, "a partial directory left by an interrupted write")
    try:
        meta = json.loads((directory / "meta.json").read_text())
    except FileNotFoundError:
        raise _refuse(directory, "no meta.json: the write did not finish") from None
    except (OSError, ValueError) as exc:
        raise _refuse(directory, f"unreadable meta.json: {exc}") from None
    if meta.get("format") != FORMAT or meta.get("version") != VERSION:
        raise _refuse(directory, f"format {meta.get('format')} version {meta.get('version')}, this arpipe "
                                 f"reads {FORMAT} version {VERSION}")
    for name, size in meta["files"].items():
        actual = (directory / name).stat().st_size if (directory / name).exists() else None
        if actual != size:
            raise _refuse(directory, f"{name} has {actual} bytes, meta.json says {size}")
    order, V, counts = meta["order"], meta["vocab_size"], meta["num_ngrams"]

    def array(n: int, kind: str, dtype) -> np.ndarray:
        if counts[n - 1] == 0:
            return np.zeros(0, dtype=dtype)
        return np.asarray(np.load(directory / f"order{n}.{kind}.npy", mmap_mode="r"))  # plain view: fast

    keys = (np.arange(V, dtype=np.int64),) + tuple(array(n, "keys", np.int64) for n in range(2, order + 1))
    logprob = tuple(array(n, "logprob", np.float64) for n in range(1, order + 1))
    logbackoff = tuple(array(n, "logbackoff", np.float64) for n in range(1, order))
    logbackoff += (np.zeros(counts[order - 1]),)  # calloc: the pages of a never-read array cost nothing
    extends = np.asarray(np.load(directory / "order1.extends.npy", mmap_mode="r")) if order >= 2 else None
    tables = (extends,) + tuple(KeyHash(np.load(directory / f"order{n}.table.npy", mmap_mode="r"),
                                     meta["tables"][str(n)]["num_buckets"]) for n in range(2, order + 1))
    return BackoffModel(meta["name"], order, V, meta["bos_id"], meta["eos_id"], keys, logprob, logbackoff,
                        meta["unk_id"], meta.get("info", {}), tables=tables)
