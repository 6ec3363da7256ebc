"""corpus_count: raw n-gram counts of orders 1..N from a token stream, out of core, in bounded memory.

In: a re-iterable stream of id arrays in the shard layout (whole documents back to back, each ending with
``eos_id``), read twice. Out: ``CountTables`` in a directory: per order n >= 2 the sorted distinct n-grams as
integer keys ``row(prefix) * V + word`` (the keys every estimator and ``BackoffModel`` use, see
``arcore.ngram.index``) with their raw counts, and the dense unigram counts; optionally the same tables as
Parquet (``order{n}.parquet``, columns ``w1..wn, count``) for DuckDB/Polars users.

Conventions are those of ``arcore.ngram.counts`` (lmplz's): every document is read ``<s> w1 ... wk </s>``;
``<s>`` starts n-grams and is never the last word of one of order >= 2; n-grams never cross documents.

How (KenLM's ``corpus_count`` sorts padded N-grams; this sorts *windows*): the window at position s is
the N tokens ``ext[s : s+N]`` of the ``<s>``-extended stream. The n-gram starting at s is the window's first
n columns, valid when none of columns 1..n-1 is ``<s>`` (that would cross into the next document). So the
count of an n-gram is the number of windows that start with it, and *one* lexicographic sort of the
windows gives every order at once: the distinct n-grams of order n are the runs of equal first n columns,
in exactly the lexicographic order whose ranks the keys need. Example, N = 2, ids ``[5, 6, 2, 5, 2]``
(eos 2, bos 1)::

    ext      <s> 5 6 </s> <s> 5 </s>
    windows  (1,5) (5,6) (6,2) (2,1) (1,5) (5,2) (2,1)      # the last one padded with <s>
    sorted   (1,5) (1,5) (2,1) (2,1) (5,2) (5,6) (6,2)
    bigrams  (1,5): 2, (5,2): 1, (5,6): 1, (6,2): 1          # (2,1) ends with <s>: not a bigram

Bounded memory: pass 1 counts unigrams; from them the windows are planned into partitions by ranges of
their first token, each holding at most ``memory_budget / BYTES_PER_WINDOW`` windows; pass 2 appends each
window to its partition's file; then every partition is sorted and grouped on its own (``count_partition``,
the map step a ``mapper`` may run elsewhere) and its n-grams appended to the per-order tables. Partitions
are ranges of first tokens, so they are already in global order and no n-gram spans two of them. The one
limit: a single token with more windows than a partition holds gets a partition of its own, larger than
planned (at a 1 GB budget: a token seen more than ~25 M times).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Callable, Iterable, Iterator, Optional

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from arcore.errors import InputError, StageError
from arcore.io import atomic_write_bytes
from arcore.ngram.counts import document_starts, insert_bos
from arcore.ngram.diskarray import NpyAppender, NpyFile, drop_pages, read_dropping, release_memory, write_npy
from arcore.parallel import OptionalMapper

Progress = Optional[Callable[[int, Optional[int]], None]]
Stream = Callable[[], Iterable[np.ndarray]]

# Bytes of memory per window planned for a partition: sorting and grouping measured 120-170 bytes per
# window (N = 5, uint16/uint32 ids, packed sort or lexsort: columns, sort order, run flags, ranks, results);
# the rest is headroom for what the process holds besides (heap not yet returned, the stream's buffers). Was: the packed
# sort key and its sorted copy (16), per-order run flags and ranks (~16). Measured, rounded up.
BYTES_PER_WINDOW = 256
TABLES_JSON = "tables.json"


@dataclass(frozen=True)
class CountTables:
    """Count tables on disk (``directory``): ``order{n}.keys.npy`` and ``order{n}.counts.npy`` for n >= 2,
    ``order1.counts.npy`` dense over the vocabulary. ``bos_rows[n-1]``: the ``[lo, hi)`` rows of order n
    whose first word is ``<s>`` (one contiguous block: the tables are sorted)."""

    directory: Path
    order: int
    vocab_size: int
    bos_id: int
    eos_id: int
    num_ngrams: tuple[int, ...]
    bos_rows: tuple[tuple[int, int], ...]
    tokens: int
    partitions: int = 1

    def path(self, n: int, what: str) -> Path:
        return self.directory / f"order{n}.{what}.npy"

    def file(self, n: int, what: str) -> NpyFile:
        return NpyFile(self.path(n, what))

    def unigram_counts(self) -> np.ndarray:
        return np.load(self.path(1, "counts"))

    def save(self) -> None:
        meta = {"order": self.order, "vocab_size": self.vocab_size, "bos_id": self.bos_id, "eos_id": self.eos_id,
                "num_ngrams": list(self.num_ngrams), "bos_rows": [list(r) for r in self.bos_rows],
                "tokens": self.tokens, "partitions": self.partitions}
        atomic_write_bytes(self.directory / TABLES_JSON, json.dumps(meta, indent=2).encode())

    @classmethod
    def load(cls, directory: Path) -> "CountTables":
        path = Path(directory) / TABLES_JSON
        if not path.exists():
            raise StageError(f"{directory} holds no complete count tables ({TABLES_JSON} missing); recount")
        m = json.loads(path.read_text())
        return cls(Path(directory), m["order"], m["vocab_size"], m["bos_id"], m["eos_id"], tuple(m["num_ngrams"]),
                   tuple(tuple(r) for r in m["bos_rows"]), m["tokens"], m.get("partitions", 1))


def windows(ids: np.ndarray, order: int, bos_id: int, eos_id: int, dtype) -> np.ndarray:
    """``(len(ext), N)`` windows of a chunk of whole documents (see the module docstring), padded with ``<s>``."""
    ext = insert_bos(ids, bos_id, eos_id)
    padded = np.concatenate([ext, np.full(order - 1, bos_id, dtype=np.int64)]).astype(dtype)
    view = np.lib.stride_tricks.sliding_window_view(padded, order)
    return np.ascontiguousarray(view[: ext.size])


def sort_windows(w: np.ndarray, vocab: int) -> np.ndarray:
    """Rows of ``w`` in lexicographic order. The columns are packed into as few int64 keys as hold them
    (``bits(V)`` bits a column, 63 a key): one key is one ``np.sort`` (BPE vocabularies, N <= 5 at V <= 4096),
    several a ``np.lexsort`` over the keys (word vocabularies: 2 keys for V < 2**21, N = 5)."""
    n_cols = w.shape[1]
    bits = max(1, int(vocab - 1).bit_length())
    per_key = max(1, 63 // bits)
    if n_cols <= per_key:
        key = np.zeros(len(w), dtype=np.int64)
        for j in range(n_cols):
            key = (key << bits) | w[:, j]
        key.sort()
        out = np.empty_like(w)
        mask = (1 << bits) - 1
        for j in range(n_cols - 1, -1, -1):
            out[:, j] = key & mask
            key >>= bits
        return out
    keys = []
    for first in range(0, n_cols, per_key):
        key = np.zeros(len(w), dtype=np.int64)
        for j in range(first, min(n_cols, first + per_key)):
            key = (key << bits) | w[:, j]
        keys.append(key)
    return w[np.lexsort(keys[::-1])]


@dataclass(frozen=True)
class PartitionCounts:
    """What ``count_partition`` returns for one partition, per order n >= 2 (index n-2): the rank of each
    distinct n-gram's prefix among the partition's distinct (n-1)-grams (for n = 2: the first word itself),
    its last word, its count, and ``bos`` - how many of the leading n-grams start with ``<s>``."""

    prefix_rank: tuple[np.ndarray, ...]
    word: tuple[np.ndarray, ...]
    count: tuple[np.ndarray, ...]
    columns: tuple[np.ndarray, ...]   # (m_n, n) ids of the distinct n-grams, only when asked for
    bos: tuple[int, ...]


def count_partition(w: np.ndarray, vocab: int, bos_id: int, with_columns: bool = False) -> PartitionCounts:
    """Sort one partition's windows and read every order's distinct n-grams off the runs (the map step)."""
    N = w.shape[1]
    s = sort_windows(w, vocab)
    m = len(s)
    new_run = np.zeros(m, dtype=bool)   # a run of equal first n columns starts here
    if m:
        new_run[0] = True
    valid = np.ones(m, dtype=bool)      # no <s> among columns 1..n-1
    prev_valid_starts = None
    ranks, words, counts, cols, bos = [], [], [], [], []
    for n in range(1, N + 1):
        j = n - 1
        if m > 1:
            new_run[1:] |= s[1:, j] != s[:-1, j]
        if j >= 1:
            valid &= s[:, j] != bos_id
        starts = np.flatnonzero(new_run & valid)
        if n >= 2:
            ends = _run_ends(new_run, starts, m)
            if n == 2:
                rank = s[starts, 0].astype(np.int64)
            else:
                rank = np.searchsorted(prev_valid_starts, starts, side="right") - 1
            ranks.append(rank)
            words.append(s[starts, j].astype(np.int64))
            counts.append((ends - starts).astype(np.int64))
            cols.append(s[starts, :n] if with_columns else np.zeros((0, n), dtype=s.dtype))
            bos.append(int(np.count_nonzero(s[starts, 0] == bos_id)))
        prev_valid_starts = starts
    return PartitionCounts(tuple(ranks), tuple(words), tuple(counts), tuple(cols), tuple(bos))


def _run_ends(new_run: np.ndarray, starts: np.ndarray, m: int) -> np.ndarray:
    """End (exclusive) of the run that begins at each of ``starts``: the next run start after it."""
    all_starts = np.flatnonzero(new_run)
    nxt = np.searchsorted(all_starts, starts, side="right")
    return np.where(nxt < all_starts.size, all_starts[np.minimum(nxt, all_starts.size - 1)], m)


def plan_partitions(first_counts: np.ndarray, capacity: int,
                    second_counts: dict[int, tuple[np.ndarray, np.ndarray]] | None = None,
                    vocab: int | None = None) -> np.ndarray:
    """Partition starts as keys ``w1 * V + w2`` of a window's first two tokens: greedy ranges of first
    tokens holding at most ``capacity`` windows, and a token with more windows than that (``second_counts``
    gives, per such token, the second tokens and their counts) split by ranges of its second token.

    Without splits the keys are ``token * V``: ``plan_partitions([3, 1, 4, 1, 5], 5, vocab=10)`` ->
    ``[0, 20, 40]`` (windows 4 | 5 | 5). A bigram seen more than ``capacity`` times stays one partition.
    """
    V = int(vocab if vocab is not None else len(first_counts))
    second_counts = second_counts or {}
    starts = [0]
    held = 0
    for token, c in enumerate(np.asarray(first_counts).tolist()):
        if held and held + c > capacity:
            starts.append(token * V)
            held = 0
        if c > capacity and token in second_counts:
            words, counts = second_counts[token]
            for word, cw in zip(words.tolist(), counts.tolist()):
                if held and held + cw > capacity:
                    starts.append(token * V + word)
                    held = 0
                held += cw
            continue
        held += c
    return np.array(starts, dtype=np.int64)


def _second_token_counts(stream: "Stream", eos_id: int, bos_id: int, piece: int, heavy: np.ndarray,
                         vocab: int) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """For each token in ``heavy``: the distinct tokens that follow it in a window, with their counts."""
    keys, counts = np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    for arr in _pieces(stream, eos_id, piece):
        ext = insert_bos(arr, bos_id, eos_id)
        nxt = np.append(ext[1:], bos_id)
        at = np.isin(ext, heavy)
        k, c = np.unique(ext[at] * vocab + nxt[at], return_counts=True)
        keys, inv = np.unique(np.concatenate([keys, k]), return_inverse=True)
        counts = np.bincount(inv, weights=np.concatenate([counts, c])).astype(np.int64)
    first, second = np.divmod(keys, vocab)
    return {int(h): (second[first == h], counts[first == h]) for h in heavy.tolist()}


def _pieces(stream: Stream, eos_id: int, piece_tokens: int) -> Iterator[np.ndarray]:
    """The stream re-cut into pieces of whole documents of about ``piece_tokens`` tokens."""
    for arr in stream():
        arr = np.asarray(arr)
        if arr.size == 0:
            continue
        document_starts(arr, eos_id)  # refuses a trailing partial document
        if arr.size <= piece_tokens:
            yield arr
            continue
        ends = np.flatnonzero(arr == eos_id) + 1
        cuts = np.unique(ends[np.minimum(np.searchsorted(ends, np.arange(piece_tokens, arr.size, piece_tokens)),
                                         ends.size - 1)])
        lo = 0
        for hi in cuts.tolist() + [arr.size]:
            if hi > lo:
                yield arr[lo:hi]
                lo = hi


def corpus_count(stream: Stream, order: int, vocab_size: int, bos_id: int, eos_id: int, out_dir: Path, *,
                 memory_budget_bytes: int = 1 << 30, progress: Progress = None, parquet_dir: Path | None = None,
                 mapper: OptionalMapper = None, partition_windows: int | None = None) -> CountTables:
    """Count every n-gram of orders 1..``order`` in ``stream()`` into ``out_dir`` (see the module docstring).

    ``stream`` is called twice and must give the same arrays both times. ``parquet_dir``: also write the
    tables as Parquet there. ``progress(done, total)`` counts partitions. ``mapper`` runs
    ``count_partition`` on the partitions, in order (``None``: here). ``partition_windows`` caps the
    windows of a partition below what the budget holds (smaller pieces for a cluster).
    """
    if order < 1:
        raise InputError(f"order must be >= 1, got {order}")
    V = int(vocab_size)
    dtype = np.uint16 if V <= (1 << 16) else np.uint32
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    piece = max(1 << 12, memory_budget_bytes // 256)  # pass 1-2 hold ~130 bytes per token of a piece
    # pass 1: unigram counts = windows per first token
    unigrams = np.zeros(V, dtype=np.int64)
    tokens = 0
    for arr in _pieces(stream, eos_id, piece):
        arr = np.asarray(arr, dtype=np.int64)
        if arr.min() < 0 or arr.max() >= V:
            raise InputError(f"token ids must lie in [0, {V}); got [{arr.min()}, {arr.max()}]")
        ext = insert_bos(arr, bos_id, eos_id)
        unigrams += np.bincount(ext, minlength=V)
        tokens += arr.size
    write_npy(out_dir / "order1.counts.npy", unigrams)
    capacity = max(1, memory_budget_bytes // BYTES_PER_WINDOW)
    if partition_windows:
        capacity = min(capacity, int(partition_windows))
    heavy = np.flatnonzero(unigrams > capacity)
    second = _second_token_counts(stream, eos_id, bos_id, piece, heavy, V) if heavy.size and order >= 2 else {}
    part_starts = plan_partitions(unigrams, capacity, second, V)
    spill = out_dir / "windows"
    shutil.rmtree(spill, ignore_errors=True)
    spill.mkdir()
    # pass 2: every window into its partition's file
    files = [open(spill / f"part-{p:05d}.bin", "wb") for p in range(len(part_starts))]
    try:
        if order >= 2:
            for arr in _pieces(stream, eos_id, piece):
                w = windows(arr, order, bos_id, eos_id, dtype)
                part = np.searchsorted(part_starts, w[:, 0].astype(np.int64) * V + w[:, 1], side="right") - 1
                if len(part_starts) <= 1 << 16:
                    part = part.astype(np.uint16)  # stable argsort of 16-bit keys is a radix sort: ~2x faster
                by_part = np.argsort(part, kind="stable")
                bounds = np.searchsorted(part[by_part], np.arange(len(part_starts) + 1))
                for p in np.flatnonzero(np.diff(bounds)):
                    files[p].write(w[by_part[bounds[p]:bounds[p + 1]]].tobytes())
    finally:
        for f in files:
            drop_pages(f, sync=not f.closed)  # written out, their pages reused (diskarray.drop_pages)
            f.close()
    w = part = by_part = None  # the last piece's arrays, before the partitions need the memory
    release_memory()
    # sort + group each partition, append its n-grams to the per-order tables
    def load(p: int) -> np.ndarray:
        with open(spill / f"part-{p:05d}.bin", "rb") as f:
            raw = read_dropping(f, dtype, -1)
        return raw.reshape(-1, order)

    count = partial(count_partition, vocab=V, bos_id=bos_id, with_columns=parquet_dir is not None)
    keys_out = [NpyAppender(out_dir / f"order{n}.keys.npy", np.int64) for n in range(2, order + 1)]
    counts_out = [NpyAppender(out_dir / f"order{n}.counts.npy", np.int64) for n in range(2, order + 1)]
    writers = _ParquetTables(parquet_dir, order, unigrams, {"order": order, "vocab_size": V, "bos_id": bos_id,
                                                              "eos_id": eos_id}) if parquet_dir is not None else None
    base = [0] * (order + 1)        # rows of order n emitted so far (order 1 is dense: ids)
    bos_rows = [[bos_id, bos_id + 1]] + [[0, 0] for _ in range(2, order + 1)]
    try:
        for p, pc in enumerate((mapper or map)(count, (load(p) for p in range(len(part_starts))))):
            for n in range(2, order + 1):
                i = n - 2
                prefix_row = pc.prefix_rank[i] if n == 2 else pc.prefix_rank[i] + base[n - 1]
                keys_out[i].append(prefix_row * V + pc.word[i])
                counts_out[i].append(pc.count[i])
                if pc.bos[i]:  # <s> may be split over several partitions (by second token)
                    if bos_rows[n - 1][1] == 0:
                        bos_rows[n - 1][0] = base[n]
                    bos_rows[n - 1][1] = base[n] + pc.bos[i]
                if writers is not None:
                    writers.append(n, pc.columns[i], pc.count[i])
            for n in range(2, order + 1):
                base[n] += len(pc.count[n - 2])
            (spill / f"part-{p:05d}.bin").unlink()
            del pc  # before the next partition is loaded and counted, which reuses its pages (ngram.heap)
            if progress is not None:
                progress(p + 1, len(part_starts))
    except BaseException:
        for out in keys_out + counts_out:
            out.abort()
        raise
    for out in keys_out + counts_out:
        out.close()
    if writers is not None:
        writers.close()
    shutil.rmtree(spill, ignore_errors=True)
    num = (V,) + tuple(base[2:order + 1])
    tables = CountTables(out_dir, order, V, bos_id, eos_id, num, tuple(tuple(r) for r in bos_rows), tokens,
                         len(part_starts))
    tables.save()
    return tables


class _ParquetTables:
    """``order{n}.parquet`` (columns w1..wn int32, count int64) in row groups of exactly ``ROW_GROUP`` rows
    (the last one shorter), so the files' bytes do not depend on how the windows were partitioned."""

    ROW_GROUP = 1 << 20

    def __init__(self, directory: Path, order: int, unigrams: np.ndarray, meta: dict):
        self.meta = json.dumps(meta)
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.tmp, self.writers, self.pending = {}, {}, {}
        seen = np.flatnonzero(unigrams)
        self._open(1)
        self.append(1, seen[:, None], unigrams[seen])
        for n in range(2, order + 1):
            self._open(n)

    def _open(self, n: int) -> None:
        schema = pa.schema([(f"w{j + 1}", pa.int32()) for j in range(n)] + [("count", pa.int64())],
                           metadata={"arpipe": self.meta})
        path = self.directory / f"order{n}.parquet.partial"
        self.tmp[n] = path
        self.writers[n] = pq.ParquetWriter(path, schema)
        self.pending[n] = []

    def append(self, n: int, cols: np.ndarray, cnt: np.ndarray) -> None:
        if len(cnt) == 0:
            return
        arrays = [pa.array(cols[:, j].astype(np.int32)) for j in range(n)] + [pa.array(cnt.astype(np.int64))]
        self.pending[n].append(pa.Table.from_arrays(arrays, schema=self.writers[n].schema))
        self._flush(n, final=False)

    def _flush(self, n: int, final: bool) -> None:
        held = sum(t.num_rows for t in self.pending[n])
        if not held or (held < self.ROW_GROUP and not final):
            return
        table = pa.concat_tables(self.pending[n])
        whole = table.num_rows if final else table.num_rows - table.num_rows % self.ROW_GROUP
        for lo in range(0, whole, self.ROW_GROUP):
            self.writers[n].write_table(table.slice(lo, min(self.ROW_GROUP, whole - lo)))
        self.pending[n] = [table.slice(whole)] if whole < table.num_rows else []

    def close(self) -> None:
        for n, w in self.writers.items():
            self._flush(n, final=True)
            w.close()
            self.tmp[n].replace(self.directory / f"order{n}.parquet")
