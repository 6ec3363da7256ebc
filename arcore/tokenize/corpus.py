"""Stream one split's documents out of ingest's ``documents.parquet``, in file order.

Input: ``<ingest_dir>/documents.parquet`` with columns doc_id (string), split (string), text
(large_string), source (string). Output: batches of ``(doc_ids, texts)`` for one split, in the order the
rows appear in the file, never holding more than one Parquet record batch plus one output batch in
memory. The tokenizer stage trains from these texts; the shards stage encodes them batch by batch.

Batches are cut by document count *and* by text size, so one very long document does not drag a
thousand others into memory with it: a batch closes as soon as it reaches ``max_documents`` documents or
``max_chars`` characters of text (a single document longer than that forms a batch alone).
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from arcore.errors import StageError
from arcore.ingest.schema import DOCUMENTS_FILE, SPLITS

_READ_ROWS = 4096  # rows per Parquet record batch read; output batches are cut independently


def documents_path(ingest_dir: Path) -> Path:
    """``<ingest_dir>/documents.parquet``, or a StageError naming the missing file."""
    path = Path(ingest_dir) / DOCUMENTS_FILE
    if not path.is_file():
        raise StageError(f"{path} not found: run the ingest stage first (it writes {DOCUMENTS_FILE})")
    return path


def iter_split_record_batches(ingest_dir: Path, split: str) -> Iterator[pa.RecordBatch]:
    """Arrow record batches (doc_id, text) of ``split``'s rows in file order, at most _READ_ROWS each,
    read one Parquet row group at a time."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    path = documents_path(ingest_dir)
    parquet = pq.ParquetFile(path)
    missing = {"doc_id", "split", "text"} - set(parquet.schema_arrow.names)
    if missing:
        raise StageError(f"{path} lacks columns {sorted(missing)}: rerun the ingest stage with this arpipe")
    # One row group at a time: memory follows ingest.row_group_bytes. (ParquetFile.iter_batches over the
    # whole file kept ~0.5 GB of decoded buffers alive on a 1 GB documents table, pyarrow 25.)
    for i in range(parquet.num_row_groups):
        group = parquet.read_row_group(i, columns=["doc_id", "split", "text"], use_threads=False)
        group = group.filter(pc.equal(group.column("split"), split)).select(["doc_id", "text"])
        for record_batch in group.to_batches(max_chunksize=_READ_ROWS):
            yield record_batch


def iter_document_batches(
    ingest_dir: Path, split: str, max_documents: int = 1024, max_chars: int = 8 << 20
) -> Iterator[tuple[list[str], list[str]]]:
    """Yield ``(doc_ids, texts)`` batches of ``split``'s documents in file order.

    Example: a file whose rows are (a, train), (b, valid), (c, train) gives, for ``split="train"`` and
    ``max_documents=1``: ``(["a"], [text_a])``, then ``(["c"], [text_c])``.
    """
    ids: list[str] = []
    texts: list[str] = []
    size = 0
    for selected in iter_split_record_batches(ingest_dir, split):
        for doc_id, text in zip(selected.column("doc_id").to_pylist(), selected.column("text").to_pylist()):
            ids.append(doc_id)
            texts.append(text)
            size += len(text)
            if len(ids) >= max_documents or size >= max_chars:
                yield ids, texts
                ids, texts, size = [], [], 0
    if ids:
        yield ids, texts


def iter_texts(ingest_dir: Path, split: str) -> Iterator[str]:
    """Every text of ``split`` in file order (what the tokenizer trainers consume)."""
    for _, texts in iter_document_batches(ingest_dir, split):
        yield from texts


def count_documents(ingest_dir: Path) -> int:
    """Number of rows in ``documents.parquet`` over all splits (from the footer; reads no data)."""
    return pq.ParquetFile(documents_path(ingest_dir)).metadata.num_rows
