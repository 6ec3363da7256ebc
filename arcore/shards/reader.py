"""Read a split's shards back as token ids: the flat stream, (batch, time) rows, and BPTT windows.

Input: a shards directory written by ``build_shards``. Outputs:
- ``read_ids(shards_dir, split)``: every id of the split in document order, one contiguous numpy array
  (uint16 or uint32, as stored). Documents are back to back, each ending with ``eos_id``: this is the
  array n-gram counting and ``LanguageModel.score`` take.
- ``iter_shard_ids``: the same, one array per shard, each a zero-copy view of the decompressed Arrow
  buffer (Parquet pages are zstd-compressed, so the bytes on disk cannot be memory-mapped as ids).
- ``batchify(ids, batch_size)``: PyTorch word_language_model's ``batchify`` in (batch, time) layout.
- ``bptt_windows(rows, bptt)``: its ``get_batch`` loop, yielding (input, target) windows.
- ``split_stats``: tokens, documents, source bytes and words of a split, from its manifest.

To feed torch: ``torch.from_numpy(window.astype(np.int64))`` (embedding lookups want int64).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import pyarrow.parquet as pq

from arcore.errors import InputError, StageError
from arcore.shards.manifest import load_complete_manifest, verify_shards


@dataclass(frozen=True)
class SplitStats:
    """Denominators for a split: see ``arcore.shards.manifest`` for how each is counted."""

    tokens: int
    documents: int
    source_bytes: int
    words: int
    unk_tokens: int
    vocab_size: int
    tokenizer_sha256: str


def split_stats(shards_dir: Path, split: str) -> SplitStats:
    m = load_complete_manifest(shards_dir, split)
    return SplitStats(m.tokens, m.documents, m.source_bytes, m.words, m.unk_tokens, m.vocab_size, m.tokenizer_sha256)


def iter_shard_ids(
    shards_dir: Path, split: str, tokenizer_sha256: str | None = None, verify: bool = True
) -> Iterator[np.ndarray]:
    """Each shard's ids, in order, as read-only numpy views over Arrow memory (no copy after decoding)."""
    manifest = load_complete_manifest(shards_dir, split, tokenizer_sha256)
    if verify:
        verify_shards(shards_dir, manifest)
    for entry in manifest.shards:
        column = pq.read_table(Path(shards_dir) / entry.file, columns=["ids"], memory_map=True).column("ids")
        for chunk in column.chunks:
            values = chunk.flatten()  # respects slicing, unlike .values
            if len(values):
                yield values.to_numpy(zero_copy_only=True)


def read_ids(shards_dir: Path, split: str, tokenizer_sha256: str | None = None, verify: bool = True) -> np.ndarray:
    """All ids of ``split`` as one contiguous array; checks the count against the manifest.

    A split held in one shard is returned as the zero-copy view itself; several shards are copied once
    into an array preallocated from the manifest's token count (peak memory: the result + one shard).
    ``tokenizer_sha256`` (optional) refuses shards made by another tokenizer; ``verify`` checks sha256s.
    """
    manifest = load_complete_manifest(shards_dir, split, tokenizer_sha256)
    parts = iter_shard_ids(shards_dir, split, tokenizer_sha256, verify)
    if len(manifest.shards) == 1:
        arrays = list(parts)
        ids = arrays[0] if len(arrays) == 1 else np.concatenate(arrays)
    else:
        ids = np.empty(manifest.tokens, dtype=manifest.dtype)
        pos = 0
        for part in parts:
            ids[pos : pos + part.size] = part
            pos += part.size
        ids = ids[:pos]
    if ids.size != manifest.tokens:
        raise StageError(
            f"{split} shards in {shards_dir} hold {ids.size} ids, manifest says {manifest.tokens}: rerun the shards stage"
        )
    return ids


def batchify(ids: np.ndarray, batch_size: int) -> np.ndarray:
    """``(batch_size, T)`` rows of a flat stream: row ``b`` is ``ids[b*T:(b+1)*T]``, ``T = len(ids) // batch_size``.

    This is PyTorch word_language_model's ``batchify`` transposed: it computes
    ``data.narrow(0, 0, T * bsz).view(bsz, -1).t()`` of shape (T, bsz), whose *column* b is our *row* b.
    The tail ``len(ids) % batch_size`` ids are dropped, as there. Returns a view (no copy).

    Example: ids 0..9, batch_size 3 -> T = 3, ``[[0, 1, 2], [3, 4, 5], [6, 7, 8]]`` (9 dropped); torch's
    batchify gives ``[[0, 3, 6], [1, 4, 7], [2, 5, 8]]``, the transpose.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    steps = ids.shape[0] // batch_size
    if steps < 2:
        raise InputError(
            f"{ids.shape[0]} tokens cannot fill {batch_size} rows of at least 2 tokens: lower the batch size"
        )
    return ids[: steps * batch_size].reshape(batch_size, steps)


def bptt_windows(rows: np.ndarray, bptt: int, seed: int | None = None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Truncated-BPTT windows over ``batchify`` rows: ``(input, target)`` views, both ``(batch, seq_len)``.

    With ``seed=None`` this is word_language_model's loop exactly: for ``i`` in ``0, bptt, 2*bptt, ...``
    below ``T - 1``, ``seq_len = min(bptt, T - 1 - i)``, input ``rows[:, i:i+seq_len]``, target
    ``rows[:, i+1:i+1+seq_len]`` (the next token of each input position). Windows are consecutive, so a
    recurrent state carried from one window to the next sees an unbroken stream in every row.

    With a seed, window lengths vary as in AWD-LSTM (Merity et al. 2018, sec. 4.1): ``bptt`` with
    probability 0.95 else ``bptt / 2``, then ``max(5, round(N(that, 5)))``; still consecutive, and the same
    seed gives the same windows. Varying lengths let every token be a window start across epochs.

    Example: rows ``[[0, 1, 2, 3, 4]]``, bptt 2 -> ``([0, 1], [1, 2])``, ``([2, 3], [3, 4])``.
    """
    if bptt < 1:
        raise ValueError(f"bptt must be >= 1, got {bptt}")
    steps = rows.shape[1]
    rng = None if seed is None else np.random.default_rng(seed)
    i = 0
    while i < steps - 1:
        if rng is None:
            length = bptt
        else:
            base = bptt if rng.random() < 0.95 else bptt / 2
            length = max(5, int(round(rng.normal(base, 5))))
        seq_len = min(length, steps - 1 - i)
        yield rows[:, i : i + seq_len], rows[:, i + 1 : i + 1 + seq_len]
        i += seq_len
