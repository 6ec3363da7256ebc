"""A deterministic sample of whole held-out documents, up to a token budget, and the counts it is scored by.

Input: a shards directory, a split (``valid``, ``test``) and ``max_tokens``. Output: ``HeldOutSample``, the
sampled documents' ids in the shard layout (back to back, each ending with ``</s>``: what
``arcore.evaluate.evaluate_model`` and the trainers take), their ``TextCounts`` summed from the shards'
per-document ``source_bytes`` and ``words`` columns (so bits per byte and per-word perplexity of a sample
are exact for the sampled text), and how much of the split they are. Read one Parquet batch at a time:
memory is the sample (at most ``max_tokens`` ids) plus one batch, whatever the split's size.

What it adds: scoring and validation time and memory bounded on large splits (``evaluate.max_score_tokens``,
``rnn.max_valid_tokens``, ``transformer.max_valid_tokens``), at the price of sampling error, which the
evaluate stage reports (``<split>_tokens_evaluated`` beside ``<split>_tokens_total``, a note in
``comparison.md``).

The selection, as the tokenizer's training sample (``arcore.tokenize.sample``) makes it: with
``rate = max_tokens / split_tokens``, a document is taken when ``u(doc_id) < rate``, u being the first 8
bytes of a keyed BLAKE2b of its ``doc_id`` read as a fraction of 2**64; a selected document that would take
the sample past ``max_tokens`` is left out. Every part of the split contributes in proportion to its size
(the first N tokens would score one source only), documents are whole (every model predicts each document
from its start), and a document's selection depends on its id only, so reruns, other shard sizes and other
models see the same sample. When the split holds at most ``max_tokens`` tokens every document is taken,
in order: the figures are then exactly the whole split's.

Example: 4 documents of 30 tokens, ``max_tokens=60``: rate 0.5; the documents whose u is below 0.5 are
taken in order while the total stays within 60 tokens.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from arcore.evaluate import TextCounts
from arcore.shards.manifest import load_complete_manifest, verify_shards

HASH_KEY = b"arpipe.heldout"  # keyed apart from other hash selections of the same documents
BATCH_ROWS = 8192


@dataclass(frozen=True)
class HeldOutSample:
    """The sampled documents of one split and how much of it they are."""

    ids: np.ndarray  # flat, shard dtype, documents back to back each ending with </s>
    counts: TextCounts  # of the sampled documents
    split_tokens: int
    split_documents: int

    @property
    def tokens(self) -> int:
        return int(self.ids.size)

    @property
    def sampled(self) -> bool:
        """True when documents were left out (the figures are then estimates from the sample)."""
        return self.counts.documents < self.split_documents


def document_fraction(doc_id: str) -> float:
    """``u(doc_id)`` in [0, 1): the keyed BLAKE2b of the id as a fraction of 2**64 (stable across runs)."""
    digest = hashlib.blake2b(doc_id.encode("utf-8"), digest_size=8, key=HASH_KEY).digest()
    return int.from_bytes(digest, "little") / 2.0**64


def sample_documents(shards_dir: Path, split: str, max_tokens: int, tokenizer_sha256: Optional[str] = None,
                     verify: bool = True) -> HeldOutSample:
    """The documents of ``split`` selected as the module docstring says, at most ``max_tokens`` ids."""
    if max_tokens < 1:
        raise ValueError(f"max_tokens must be >= 1, got {max_tokens}")
    manifest = load_complete_manifest(shards_dir, split, tokenizer_sha256)
    if verify:
        verify_shards(shards_dir, manifest)
    take_all = manifest.tokens <= max_tokens
    rate = max_tokens / max(manifest.tokens, 1)
    parts: list[np.ndarray] = []
    tokens = source_bytes = words = documents = 0
    for entry in manifest.shards:
        shard = pq.ParquetFile(Path(shards_dir) / entry.file, memory_map=True)
        for batch in shard.iter_batches(batch_size=BATCH_ROWS, columns=["doc_id", "ids", "source_bytes", "words"]):
            offsets = batch.column("ids").offsets.to_numpy()
            lengths = np.diff(offsets)
            chosen = []
            for row, doc_id in enumerate(batch.column("doc_id").to_pylist()):
                if take_all or (document_fraction(doc_id) < rate and tokens + int(lengths[row]) <= max_tokens):
                    chosen.append(row)
                    tokens += int(lengths[row])
            if not chosen:
                continue
            picked = batch.take(pa.array(chosen, type=pa.int64()))
            parts.append(picked.column("ids").flatten().to_numpy())
            source_bytes += int(np.sum(picked.column("source_bytes").to_numpy()))
            words += int(np.sum(picked.column("words").to_numpy()))
            documents += len(chosen)
    ids = np.concatenate(parts) if parts else np.zeros(0, dtype=manifest.dtype)
    return HeldOutSample(ids=ids.astype(manifest.dtype, copy=False),
                         counts=TextCounts(source_bytes=source_bytes, words=words, documents=documents),
                         split_tokens=manifest.tokens, split_documents=manifest.documents)
