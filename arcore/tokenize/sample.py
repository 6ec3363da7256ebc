"""A deterministic sample of about ``sample_bytes`` of one split's text, for training the tokenizer.

Input: ingest's ``documents.parquet`` (via ``corpus.iter_split_record_batches``) and a byte budget.
Output: ``TrainingSample``, an iterable over the sampled texts in file order, streamed batch by batch
(never the split in memory), that counts what it produced: ``documents`` and ``bytes`` sampled, beside
the split's ``split_documents`` and ``split_bytes``. Bytes are UTF-8 bytes of the text.

Why a hash selection of whole documents: with ``rate = sample_bytes / split_bytes``, a document is
taken when ``u(doc_id) < rate``, where u is the first 8 bytes of BLAKE2b(doc_id) (keyed, so it is
independent of the split hash) read as a fraction of 2**64. Every part of the corpus then contributes
in proportion to its size, which is what makes the merges representative: the first N bytes would
train on the first files only (one directory of a source tree, one year of a news archive), and
taking every k-th document aliases with periodic corpora (speaker line / text line). The selection of a
document depends on its content only, not on the order of files or on the other documents, so reruns
give the same sample, and documents are whole, so no word is cut at a sample's edge. The budget is a
cap: a selected document that would take the sample past ``sample_bytes`` is left out, so the sample
is never larger than the budget and, on a large split, about as large (the expected selected bytes are
``sample_bytes``).

When the split holds at most ``sample_bytes`` bytes every document is taken, in file order, exactly the
texts the trainer saw before sampling existed: the tokenizer is byte-identical to training on the split.

Example: a split of 3 documents of 40, 40 and 20 bytes with ``sample_bytes=50``: rate = 0.5; the
documents whose hash is below 0.5 are taken while they fit in 50 bytes.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Iterator

import pyarrow.compute as pc

from arcore.tokenize.corpus import iter_split_record_batches

_KEY = b"arpipe.tokenizer.sample"


def sample_fraction(doc_id: str) -> float:
    """The document's position u in [0, 1) for sampling: ``sample_fraction("a")`` is fixed forever."""
    h = hashlib.blake2b(doc_id.encode("utf-8"), digest_size=8, key=_KEY).digest()
    return int.from_bytes(h, "big") / 2**64


class TrainingSample:
    """Iterable of the sampled texts of ``split`` (consume it once); counts filled while iterating."""

    def __init__(self, ingest_dir: Path, split: str, sample_bytes: int):
        self.ingest_dir = Path(ingest_dir)
        self.split = split
        self.sample_bytes = sample_bytes
        self.split_documents, self.split_bytes = split_size(ingest_dir, split)
        self.rate = 1.0 if self.split_bytes <= sample_bytes else sample_bytes / self.split_bytes
        self.documents = 0
        self.bytes = 0

    @property
    def complete(self) -> bool:
        """True when every document of the split is in the sample."""
        return self.rate >= 1.0

    def __iter__(self) -> Iterator[str]:
        for batch in iter_split_record_batches(self.ingest_dir, self.split):
            sizes = pc.binary_length(batch.column("text")).to_pylist()
            if self.complete:
                self.documents += len(sizes)
                self.bytes += sum(sizes)
                yield from batch.column("text").to_pylist()
                continue
            kept = []
            for i, doc_id in enumerate(batch.column("doc_id").to_pylist()):
                if sample_fraction(doc_id) < self.rate and self.bytes + sizes[i] <= self.sample_bytes:
                    kept.append(i)
                    self.documents += 1
                    self.bytes += sizes[i]
            if kept:
                yield from batch.column("text").take(kept).to_pylist()

    def records(self) -> dict[str, int]:
        """What the manifest keeps about the sample (call after training consumed it)."""
        return {
            f"{self.split}_documents": self.split_documents,
            f"{self.split}_bytes": self.split_bytes,
            "sample_documents": self.documents,
            "sample_bytes": self.bytes,
        }


def split_size(ingest_dir: Path, split: str) -> tuple[int, int]:
    """(documents, UTF-8 bytes of text) of ``split``: one vectorized pass, one record batch at a time."""
    documents = size = 0
    for batch in iter_split_record_batches(ingest_dir, split):
        documents += batch.num_rows
        if batch.num_rows:
            size += pc.sum(pc.binary_length(batch.column("text"))).as_py()
    return documents, size
