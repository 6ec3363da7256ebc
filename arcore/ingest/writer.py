"""The documents writer: admitted rows -> ``documents.parquet`` in row groups, written as they are read.

In: rows ``(doc_id, split, text, source)`` in input order, grouped by input file. Out: one
``documents.parquet`` (schema.py) whose row groups hold about ``row_group_bytes`` of UTF-8 text each.
The file is written under ``.documents.parquet.partial`` and renamed into place when the writer closes
without an error, so a half-written table never carries the final name (the stage directory itself is
committed by the stage contract, manifest last).

What it adds over a plain ``ParquetWriter``: per-file transactions. Ingest keeps a file's documents
only if the whole file reads (a truncated .gz contributes nothing), yet must not hold a whole file in
memory. Rows of the file being read wait in a buffer; when that buffer reaches ``row_group_bytes`` it
spills as a row group to a staging file beside the output. ``commit_file`` appends the staged row
groups and then the buffer to the output, in order; ``discard_file`` drops both.

Memory: at most two buffers of ``row_group_bytes`` of text (committed rows waiting to fill a row group,
rows of the current file) plus one staged row group while a file commits, whatever the corpus size.
A single document larger than ``row_group_bytes`` forms a row group alone.

Example with ``row_group_bytes=10``: files ``a`` (rows of 4, 4 bytes) and ``b`` (one row of 12 bytes)
give row groups ``[a1, a2, b1]``; ``b1`` alone reaches the size, so ``b`` is staged, and committing
``b`` first writes the waiting rows of ``a`` as one row group: ``[a1, a2]``, ``[b1]``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import pyarrow as pa
import pyarrow.parquet as pq

from arcore.ingest.schema import DOCUMENTS_SCHEMA

COMPRESSION = "zstd"


class _RowBuffer:
    """Rows as column lists, with the UTF-8 bytes of text they hold."""

    def __init__(self):
        self.columns: dict[str, list] = {name: [] for name in DOCUMENTS_SCHEMA.names}
        self.nbytes = 0

    def __len__(self) -> int:
        return len(self.columns["doc_id"])

    def append(self, row: tuple, nbytes: int) -> None:
        for column, value in zip(self.columns.values(), row):
            column.append(value)
        self.nbytes += nbytes

    def extend(self, other: "_RowBuffer") -> None:
        for name, column in self.columns.items():
            column.extend(other.columns[name])
        self.nbytes += other.nbytes

    def take_table(self) -> pa.Table:
        table = pa.table(self.columns, schema=DOCUMENTS_SCHEMA)
        self.columns = {name: [] for name in DOCUMENTS_SCHEMA.names}
        self.nbytes = 0
        return table


class DocumentsWriter:
    """Context manager writing ``path`` in row groups of about ``row_group_bytes`` of text.

    ``add`` puts a row into the current file's transaction; ``commit_file`` or ``discard_file`` ends
    it. Leaving the ``with`` block commits nothing pending: an uncommitted file is dropped. On an
    exception the partial and staging files are removed and ``path`` is not created.
    """

    def __init__(self, path: Path, row_group_bytes: int):
        self.path = Path(path)
        self.row_group_bytes = row_group_bytes
        self.partial = self.path.with_name(f".{self.path.name}.partial")
        self.staging_path = self.path.with_name(f".{self.path.name}.staging")
        self.committed = _RowBuffer()  # rows of finished files, waiting to fill a row group
        self.pending = _RowBuffer()  # rows of the file being read
        self.staging: Optional[pq.ParquetWriter] = None
        self.writer: Optional[pq.ParquetWriter] = None
        self.row_groups = 0

    def __enter__(self) -> "DocumentsWriter":
        self.writer = pq.ParquetWriter(self.partial, DOCUMENTS_SCHEMA, compression=COMPRESSION)
        return self

    def add(self, doc_id: str, split: str, text: str, source: str, nbytes: int) -> None:
        self.pending.append((doc_id, split, text, source), nbytes)
        if self.pending.nbytes >= self.row_group_bytes:
            if self.staging is None:
                self.staging = pq.ParquetWriter(self.staging_path, DOCUMENTS_SCHEMA, compression=COMPRESSION)
            self.staging.write_table(self.pending.take_table())

    def commit_file(self) -> None:
        """Keep every row added since the last commit or discard, in the order added."""
        if self.staging is not None:
            self.staging.close()
            self.staging = None
            self._flush()  # rows of earlier files go first
            staged = pq.ParquetFile(self.staging_path)
            for i in range(staged.num_row_groups):
                self._write(staged.read_row_group(i))
            staged.close()
            os.unlink(self.staging_path)
        self.committed.extend(self.pending)
        self.pending = _RowBuffer()
        if self.committed.nbytes >= self.row_group_bytes:
            self._flush()

    def discard_file(self) -> None:
        """Drop every row added since the last commit or discard."""
        self.pending = _RowBuffer()
        if self.staging is not None:
            self.staging.close()
            self.staging = None
            os.unlink(self.staging_path)

    def _flush(self) -> None:
        if len(self.committed):
            self._write(self.committed.take_table())

    def _write(self, table: pa.Table) -> None:
        # One write_table call is one row group (tables here stay far below pyarrow's row limit).
        self.writer.write_table(table, row_group_size=max(1, table.num_rows))
        self.row_groups += 1

    def __exit__(self, exc_type, *_) -> None:
        self.discard_file()
        if exc_type is None:
            self._flush()
            self.writer.close()
            os.replace(self.partial, self.path)
        else:
            self.writer.close()
            self.partial.unlink(missing_ok=True)
