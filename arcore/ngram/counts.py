"""count_ngrams: raw n-gram counts of orders 1..N from a flat token-id array, map over chunks + reduce.

Input: the shard layout, a flat integer array of documents back to back, each followed by ``eos_id``.
Output: ``NGramCounts``, for every order n a lexicographically sorted ``(m_n, n)`` id matrix of the distinct
n-grams and their raw counts. Count tables are stored as Parquet (one file per order, columns ``w1..wn``
and ``count``).

Sentence boundaries follow KenLM's lmplz: every document is read as ``<s> w1 ... wk </s>``; ``<s>`` is
context only (it starts n-grams, it is never the last word of an n-gram of order >= 2) and ``</s>`` is
predicted. n-grams never cross documents. The unigram ``<s>`` counts documents. Example, order 2::

    ids [5, 6, 2, 5, 2] with eos 2, bos 1  ->  <s> 5 6 </s> | <s> 5 </s>
    unigrams {<s>: 2, 5: 2, 6: 1, </s>: 2}; bigrams {(<s>,5): 2, (5,6): 1, (6,</s>): 1, (5,</s>): 1}

How it scales: the map step (``count_chunk``) counts one chunk of whole documents at a time with numpy only (each order
is one ``np.unique`` over int64 keys ``rank(prefix) * V + word``, so no Python loop per token) and
produces a sorted run per order. Runs stay in memory until they exceed half the memory budget, then are
merged and spilled to Parquet under ``spill_dir``. The reduce step works one order at a time and folds
the spilled runs into the result one by one (re-ranking rows column by column, then summing duplicates),
so beyond the result itself it holds one run. Chunks are cut at document ends, at most
``memory_budget / (48 * order)`` tokens each, and at every extra cut the caller gives (the pipeline passes
shard boundaries: counting is then per shard). A ``mapper`` (``arcore.parallel``) runs the map step
elsewhere, e.g. one Dask task per chunk; counts are exact sums, so any chunking and any mapper give
identical tables.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from arcore.io import atomic_write_with
from arcore.errors import InputError, StageError
from arcore.parallel import OptionalMapper

Progress = Optional[Callable[[int, Optional[int]], None]]

# Rough bytes of numpy work per token and order while counting one chunk (keys, inverse, sort buffers).
_BYTES_PER_TOKEN_ORDER = 48


@dataclass(frozen=True, eq=False)
class NGramCounts:
    """Raw n-gram counts. ``ngrams[n-1]``: ``(m_n, n)`` int64 ids, sorted; ``counts[n-1]``: ``(m_n,)``."""

    order: int
    vocab_size: int
    bos_id: int
    eos_id: int
    ngrams: tuple[np.ndarray, ...]
    counts: tuple[np.ndarray, ...]

    def num_ngrams(self) -> list[int]:
        return [len(c) for c in self.counts]

    def as_dict(self, n: int) -> dict[tuple[int, ...], int]:
        """Order ``n`` as ``{(w1, ..., wn): count}`` (for tests and small corpora)."""
        return {tuple(int(w) for w in row): int(c) for row, c in zip(self.ngrams[n - 1], self.counts[n - 1])}


def counts_of_counts(counts: NGramCounts) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per order, ``(r, n_r)``: the distinct count values r and how many n-grams occur r times (Zipf's view).

    ``[5, 1, 1, 2]`` -> ``([1, 2, 5], [2, 1, 1])``.
    """
    return [tuple(np.unique(c, return_counts=True)) for c in counts.counts]


def document_starts(ids: np.ndarray, eos_id: int) -> np.ndarray:
    """Start offsets of the documents in a flat id array; refuses arrays that do not end with ``eos_id``."""
    ids = np.asarray(ids)
    if ids.size == 0:
        return np.zeros(0, dtype=np.int64)
    ends = np.flatnonzero(ids == eos_id)
    if ends.size == 0 or ends[-1] != ids.size - 1:
        raise InputError(f"token ids must end with eos_id={eos_id} (one after every document); got a trailing "
                         "partial document - append eos_id after the last document")
    return np.concatenate([[0], ends[:-1] + 1]).astype(np.int64)


def insert_bos(ids: np.ndarray, bos_id: int, eos_id: int) -> np.ndarray:
    """``with_bos``'s extended array alone (half its passes over the ids: no offsets)."""
    ids = np.asarray(ids, dtype=np.int64)
    if ids.size and np.any(ids == bos_id):
        raise InputError(f"token ids contain bos_id={bos_id} inside documents; <s> is context only and is added "
                         "by the model - remove it from the shards")
    return np.insert(ids, document_starts(ids, eos_id), bos_id)


def with_bos(ids: np.ndarray, bos_id: int, eos_id: int) -> tuple[np.ndarray, np.ndarray]:
    """``<s>`` inserted before every document: ``[5, 6, 2, 5, 2] -> [1, 5, 6, 2, 1, 5, 2]`` (bos 1).

    Returns the extended array and, for each position, its offset from its document's ``<s>``.
    """
    ext = insert_bos(ids, bos_id, eos_id)
    is_bos = ext == bos_id  # insert_bos refused bos inside documents: these are the inserted ones
    bos_pos = np.flatnonzero(is_bos)
    offset = np.arange(ext.size) - bos_pos[np.cumsum(is_bos) - 1]
    return ext, offset


def count_chunk(ids: np.ndarray, order: int, vocab: int, bos_id: int, eos_id: int):
    """One sorted run per order for a chunk of whole documents (the map step): ``(mats, cnts)``, where
    ``mats[n-1]`` holds the chunk's distinct n-grams sorted and ``cnts[n-1]`` their counts."""
    ext, offset = with_bos(ids, bos_id, eos_id)
    uni, uni_counts = np.unique(ext, return_counts=True)
    mats, cnts = [uni[:, None]], [uni_counts.astype(np.int64)]
    prev_rows = ext  # order 1 rows are the ids themselves
    prev_mat = None
    for n in range(2, order + 1):
        t = np.flatnonzero(offset >= n - 1)
        if t.size == 0:
            mats.append(np.zeros((0, n), dtype=np.int64))
            cnts.append(np.zeros(0, dtype=np.int64))
            prev_rows = np.full(ext.size, -1, dtype=np.int64)
            prev_mat = mats[-1]
            continue
        keys = prev_rows[t - 1] * vocab + ext[t]
        uk, inv, cnt = np.unique(keys, return_inverse=True, return_counts=True)
        prefix, word = np.divmod(uk, vocab)
        head = prefix[:, None] if n == 2 else prev_mat[prefix]
        mat = np.hstack([head, word[:, None]])
        rows = np.full(ext.size, -1, dtype=np.int64)
        rows[t] = inv
        mats.append(mat)
        cnts.append(cnt.astype(np.int64))
        prev_rows, prev_mat = rows, mat
    return mats, cnts


def merge_runs(mats: list[np.ndarray], cnts: list[np.ndarray], vocab: int) -> tuple[np.ndarray, np.ndarray]:
    """Sum the counts of sorted runs of one order (the reduce step); the result is sorted and distinct.

    ``[[(1,2)], [(1,2), (0,3)]]`` with counts ``[[4], [1, 7]]`` -> ``[(0,3), (1,2)]``, ``[7, 5]``.
    """
    mats = [m for m in mats if len(m)]
    cnts = [c for c in cnts if len(c)]
    if not mats:
        return np.zeros((0, 1), dtype=np.int64), np.zeros(0, dtype=np.int64)
    if len(mats) == 1:
        return mats[0], cnts[0]
    mat = np.concatenate(mats)
    cnt = np.concatenate(cnts)
    code = mat[:, 0].astype(np.int64)
    for j in range(1, mat.shape[1]):
        _, code = np.unique(code * vocab + mat[:, j], return_inverse=True)
    _, first, inv = np.unique(code, return_index=True, return_inverse=True)
    summed = np.bincount(inv, weights=cnt.astype(np.float64))
    if summed.size and summed.max() >= 2 ** 53:
        raise InputError("an n-gram count exceeds 2**53; split the corpus")
    return mat[first], summed.astype(np.int64)


def count_ngrams(ids: np.ndarray, order: int, bos_id: int, eos_id: int, *, vocab_size: int | None = None,
                 memory_budget_bytes: int = 1 << 30, spill_dir: Path | None = None,
                 progress: Progress = None, cuts: Sequence[int] = (),
                 mapper: OptionalMapper = None) -> NGramCounts:
    """Raw counts of all n-grams of orders 1..``order`` (see the module docstring for conventions).

    ``memory_budget_bytes`` sizes the chunks and bounds the sorted runs held in memory; the merged result
    itself (one row per distinct n-gram) is not bounded by it. Runs spill under ``spill_dir`` when given
    (the caller owns and removes it), else under a temporary directory removed on return.
    ``progress(tokens_done, tokens_total)`` is called after each chunk. ``cuts``: offsets into ``ids``
    where a chunk must also end (each must follow an ``eos_id``). ``mapper`` runs ``count_chunk`` on the
    chunks, in order (``None``: here, one after another).
    """
    stored = np.asarray(ids)  # chunks are sliced from the stored dtype (uint16 ids ship at 2 bytes/token)
    ids = np.asarray(ids, dtype=np.int64)
    if order < 1:
        raise InputError(f"order must be >= 1, got {order}")
    vocab = int(vocab_size) if vocab_size is not None else int(max(ids.max(initial=0), bos_id, eos_id)) + 1
    if ids.size and (ids.min() < 0 or ids.max() >= vocab):
        raise InputError(f"token ids must lie in [0, {vocab}); got [{ids.min()}, {ids.max()}]")
    document_starts(ids, eos_id)
    bounds = chunk_bounds(ids, eos_id, max(4096, memory_budget_bytes // (_BYTES_PER_TOKEN_ORDER * order)), cuts)
    count = partial(count_chunk, order=order, vocab=vocab, bos_id=bos_id, eos_id=eos_id)
    chunks = (stored[bounds[i]:bounds[i + 1]] for i in range(len(bounds) - 1))
    runs: list[tuple[list, list]] = []
    spilled: list[Path] = []
    held = 0
    tmp_owner = None
    for i, (mats, cnts) in enumerate((mapper or map)(count, chunks)):
        runs.append((mats, cnts))
        held += sum(m.nbytes + c.nbytes for m, c in zip(mats, cnts))
        if held > memory_budget_bytes // 2 and i < len(bounds) - 2:
            if spill_dir is None:
                tmp_owner = tmp_owner or tempfile.TemporaryDirectory(prefix="arpipe-ngram-spill-")
                spill_dir = Path(tmp_owner.name)
            spilled.append(_spill(runs, order, vocab, Path(spill_dir), len(spilled)))
            runs, held = [], 0
        if progress is not None:
            progress(int(bounds[i + 1]), int(ids.size))
    out_mats, out_cnts = [], []
    for n in range(1, order + 1):
        mat, cnt = merge_runs([r[0][n - 1] for r in runs], [r[1][n - 1] for r in runs], vocab)
        for run_dir in spilled:  # one spilled run at a time: peak = merged result + one run
            run_mat, run_cnt, _ = _read_table(run_dir / f"order{n}.parquet")
            mat, cnt = merge_runs([mat.reshape(-1, n), run_mat], [cnt, run_cnt], vocab)
        out_mats.append(mat.reshape(-1, n))
        out_cnts.append(cnt)
    if tmp_owner is not None:
        tmp_owner.cleanup()
    return NGramCounts(order, vocab, bos_id, eos_id, tuple(out_mats), tuple(out_cnts))


def chunk_bounds(ids: np.ndarray, eos_id: int, chunk_tokens: int, cuts: Sequence[int] = ()) -> np.ndarray:
    """Offsets ``[0, ..., len(ids)]`` cutting ``ids`` into chunks of whole documents: after the document
    that reaches each multiple of ``chunk_tokens``, and at every offset in ``cuts``.

    ``[5, 6, 2, 5, 2, 7, 2]`` (eos 2), ``chunk_tokens=2`` -> ``[0, 3, 5, 7]``; with ``cuts=[5]`` the same.
    """
    ends = np.flatnonzero(ids == eos_id) + 1
    if not ends.size:
        return np.array([0, ids.size], dtype=np.int64)
    budget = ends[np.minimum(np.searchsorted(ends, np.arange(chunk_tokens, ids.size, chunk_tokens)), ends.size - 1)]
    extra = np.asarray(cuts, dtype=np.int64)
    if extra.size and not np.isin(extra[(extra > 0) & (extra < ids.size)], ends).all():
        raise InputError("chunk cuts must fall right after an eos_id (between documents)")
    inner = np.union1d(budget, extra)
    inner = inner[(inner > 0) & (inner < ids.size)]
    return np.concatenate([[0], inner, [ids.size]]).astype(np.int64)


def _spill(runs, order: int, vocab: int, spill_dir: Path, index: int) -> Path:
    run_dir = spill_dir / f"run-{index:05d}"
    run_dir.mkdir(parents=True, exist_ok=True)
    for n in range(1, order + 1):
        mat, cnt = merge_runs([r[0][n - 1] for r in runs], [r[1][n - 1] for r in runs], vocab)
        _write_table(run_dir / f"order{n}.parquet", mat.reshape(-1, n), cnt, {})
    return run_dir


def _write_table(path: Path, mat: np.ndarray, cnt: np.ndarray, meta: dict) -> None:
    cols = {f"w{j + 1}": pa.array(mat[:, j].astype(np.int32)) for j in range(mat.shape[1])}
    cols["count"] = pa.array(cnt.astype(np.int64))
    table = pa.table(cols).replace_schema_metadata({"arpipe": json.dumps(meta)})
    atomic_write(path, lambda f: pq.write_table(table, f))


def _read_table(path: Path) -> tuple[np.ndarray, np.ndarray, dict]:
    table = pq.read_table(path)
    names = [c for c in table.column_names if c.startswith("w")]
    mat = np.stack([table[c].to_numpy().astype(np.int64) for c in names], axis=1) if table.num_rows else \
        np.zeros((0, len(names)), dtype=np.int64)
    meta = json.loads((table.schema.metadata or {}).get(b"arpipe", b"{}"))
    return mat, table["count"].to_numpy().astype(np.int64), meta


def atomic_write(path: Path, write: Callable) -> None:
    """Write via ``write(binary_file)`` to a temporary name beside ``path``, fsync, then rename."""
    atomic_write_with(path, write)


def save_counts(counts: NGramCounts, directory: Path) -> list[Path]:
    """Count tables as ``directory/order{n}.parquet`` (columns w1..wn, count; metadata in the schema)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    meta = {"order": counts.order, "vocab_size": counts.vocab_size, "bos_id": counts.bos_id,
            "eos_id": counts.eos_id}
    paths = []
    for n in range(1, counts.order + 1):
        path = directory / f"order{n}.parquet"
        _write_table(path, counts.ngrams[n - 1], counts.counts[n - 1], meta)
        paths.append(path)
    return paths


def load_counts(directory: Path) -> NGramCounts:
    """Inverse of ``save_counts``."""
    directory = Path(directory)
    first = directory / "order1.parquet"
    if not first.exists():
        raise StageError(f"no count tables in {directory} (expected order1.parquet...); rerun the ngram stage")
    meta = _read_table(first)[2]
    mats, cnts = [], []
    for n in range(1, meta["order"] + 1):
        mat, cnt, _ = _read_table(directory / f"order{n}.parquet")
        mats.append(mat)
        cnts.append(cnt)
    return NGramCounts(meta["order"], meta["vocab_size"], meta["bos_id"], meta["eos_id"], tuple(mats), tuple(cnts))
