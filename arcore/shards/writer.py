"""The reduce step: encoded batches, in document order -> numbered zstd Parquet shards + manifest.

Input: ``EncodedBatch`` objects (``arcore.shards.encode``) in document order. Output: ``<split>/<split>-00000.parquet``,
``<split>/<split>-00001.parquet``, ... in ``out_dir`` (a directory per split holding only its shards, which
any Arrow reader opens whole) and the split manifest beside it, rewritten after each shard.

Cutting rule (deterministic, independent of batch sizes): documents are appended to the open shard while
its token count stays <= ``shard_tokens``; the document that would overflow it starts the next shard. A
document longer than ``shard_tokens`` on its own is written alone and counted as oversized. Documents
never straddle shards, so every shard starts at a document boundary.

Each shard is written to a temp file in ``out_dir``, fsynced, hashed, renamed to its final name; then the
manifest gains its entry. A kill at any moment leaves finished shards that the manifest lists (or one
finished shard it does not list yet, which a relaunch simply rewrites byte for byte).
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from arcore.shards.encode import EncodedBatch
from arcore.shards.manifest import ShardEntry, ShardManifest, write_manifest
from arcore.shards.schema import ShardMetadata, shard_name, shard_schema
from arcore.io import fsync_dir, sha256_file


class ShardWriter:
    """Context manager writing one split; ``manifest`` may already list shards (a resumed split)::

        with ShardWriter(out_dir, manifest) as writer:
            for batch in batches:
                writer.add(batch)
        writer.manifest  # complete
    """

    def __init__(self, out_dir: Path, manifest: ShardManifest):
        self.out_dir = Path(out_dir)
        self.manifest = manifest
        self._pieces: list[tuple[EncodedBatch, int, int]] = []  # (batch, first doc, end doc)
        self._fill = 0

    def __enter__(self) -> "ShardWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()

    def add(self, batch: EncodedBatch) -> None:
        """Take a batch's documents, writing each shard as soon as the next document would overflow it."""
        limit = self.manifest.shard_tokens
        offsets = batch.offsets
        pos = 0
        while pos < batch.documents:
            # The documents pos..end-1 fit into the room left: offsets[end] - offsets[pos] <= room.
            room = limit - self._fill
            end = int(np.searchsorted(offsets, offsets[pos] + room, side="right")) - 1
            if end > pos:
                self._pieces.append((batch, pos, end))
                self._fill += int(offsets[end] - offsets[pos])
                pos = end
            if pos < batch.documents:
                if self._fill == 0:  # one document longer than a whole shard: it gets its own
                    self._pieces.append((batch, pos, pos + 1))
                    pos += 1
                self._flush()

    def close(self) -> ShardManifest:
        """Write the last partial shard and mark the manifest complete."""
        if self._pieces:
            self._flush()
        if not self.manifest.complete:
            self.manifest = replace(self.manifest, complete=True)
            write_manifest(self.out_dir, self.manifest)
        return self.manifest

    def _flush(self) -> None:
        index = len(self.manifest.shards)
        name = shard_name(self.manifest.split, index)
        table, unk_tokens = self._table(index)
        entry = self._write(table, name, unk_tokens)
        self.manifest = self.manifest.with_shard(entry)
        write_manifest(self.out_dir, self.manifest)
        self._pieces, self._fill = [], 0

    def _table(self, index: int) -> tuple[pa.Table, int]:
        m = self.manifest
        metadata = ShardMetadata(
            split=m.split, shard_index=index, tokenizer_sha256=m.tokenizer_sha256, vocab_size=m.vocab_size,
            dtype=m.dtype, bos_id=m.bos_id, eos_id=m.eos_id, unk_id=m.unk_id,
        )
        doc_ids: list[str] = []
        ids, lengths, source_bytes, words = [], [], [], []
        for batch, lo, hi in self._pieces:
            doc_ids.extend(batch.doc_ids[lo:hi])
            ids.append(batch.ids[batch.offsets[lo] : batch.offsets[hi]])
            lengths.append(np.diff(batch.offsets[lo : hi + 1]))
            source_bytes.append(batch.source_bytes[lo:hi])
            words.append(batch.words[lo:hi])
        offsets = np.zeros(len(doc_ids) + 1, dtype=np.int32)
        np.cumsum(np.concatenate(lengths), out=offsets[1:])
        flat = np.concatenate(ids)
        values = pa.array(flat, type=getattr(pa, m.dtype)())
        schema = shard_schema(metadata)
        columns = [
            pa.array(doc_ids, type=pa.string()),
            pa.ListArray.from_arrays(pa.array(offsets), values, type=schema.field("ids").type),
            pa.array(np.concatenate(source_bytes)),
            pa.array(np.concatenate(words)),
        ]
        return pa.Table.from_arrays(columns, schema=schema), int(np.count_nonzero(flat == m.unk_id))

    def _write(self, table: pa.Table, name: str, unk_tokens: int) -> ShardEntry:
        path = self.out_dir / name
        tmp = path.with_name(f".{path.name}.tmp")
        if not path.parent.is_dir():
            path.parent.mkdir(parents=True)
            fsync_dir(self.out_dir)
        pq.write_table(
            table, tmp, compression=self.manifest.compression, compression_level=self.manifest.compression_level
        )
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        digest = sha256_file(tmp)
        os.replace(tmp, path)
        fsync_dir(path.parent)
        ids = table.column("ids")
        tokens = int(pc.sum(pc.list_value_length(ids)).as_py() or 0)
        return ShardEntry(
            file=name,
            sha256=digest,
            file_bytes=path.stat().st_size,
            first_document=self.manifest.documents,
            documents=table.num_rows,
            tokens=tokens,
            source_bytes=int(pc.sum(table.column("source_bytes")).as_py() or 0),
            words=int(pc.sum(table.column("words")).as_py() or 0),
            unk_tokens=unk_tokens,
            oversized_documents=int(tokens > self.manifest.shard_tokens),
        )

