"""The one Parquet schema of a token shard, its file names, and the metadata stamped on every file.

A shard holds one row per document, in ingest order:

=============  ===================  ===========================================================
column         type                 meaning
=============  ===================  ===========================================================
doc_id         string               ingest's document id
ids            list<uint16|uint32>  the document's token ids followed by ``eos_id`` (``</s>``)
source_bytes   int64                ``len(text.encode("utf-8")) + 1`` (the +1 is the boundary)
words          int64                ``len(text.split())``, whitespace words, boundary not counted
=============  ===================  ===========================================================

Boundary convention (``BOUNDARY``): every document's ids end with ``eos_id``; ``bos_id`` is never stored
(it is context only and the model supplies it). Concatenating the ``ids`` lists of a split's shards in
file order gives the flat stream n-gram counting and ``batchify`` use.

The id type is ``uint16`` when every id fits (vocab_size <= 65536), else ``uint32``. Each file carries
``ShardMetadata`` as JSON under the schema metadata key ``arpipe.shards``; DuckDB, Polars and pyarrow
read the shards as ordinary Parquet.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

import pyarrow as pa

BOUNDARY = "eos_after_each_document"
METADATA_KEY = b"arpipe.shards"
FORMAT = "arpipe.shards/1"
_UINT16_IDS = 1 << 16


def ids_dtype(vocab_size: int) -> str:
    """``"uint16"`` when ids 0..vocab_size-1 fit in 16 bits, else ``"uint32"``: 65536 -> uint16, 65537 -> uint32."""
    if vocab_size <= _UINT16_IDS:
        return "uint16"
    if vocab_size <= 1 << 32:
        return "uint32"
    raise ValueError(f"vocab_size {vocab_size} does not fit uint32 ids")


def shard_name(split: str, index: int) -> str:
    """``shard_name("train", 3)`` -> ``"train/train-00003.parquet"``: one directory per split, holding only
    its shards, so ``pq.read_table(<shards>/train)``, pandas, DuckDB and ``datasets`` open a split whole."""
    return f"{split}/{split}-{index:05d}.parquet"


def manifest_name(split: str) -> str:
    """``manifest_name("train")`` -> ``"train.manifest.json"``."""
    return f"{split}.manifest.json"


@dataclass(frozen=True)
class ShardMetadata:
    """What every shard file says about itself (also in the split manifest)."""

    split: str
    shard_index: int
    tokenizer_sha256: str
    vocab_size: int
    dtype: str
    bos_id: int
    eos_id: int
    unk_id: int
    boundary: str = BOUNDARY
    format: str = FORMAT

    def to_bytes(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode("utf-8")

    @classmethod
    def from_schema(cls, schema: pa.Schema) -> "ShardMetadata":
        raw = (schema.metadata or {}).get(METADATA_KEY)
        if raw is None:
            raise KeyError(f"schema has no {METADATA_KEY.decode()} metadata")
        return cls(**json.loads(raw))


def shard_schema(metadata: ShardMetadata) -> pa.Schema:
    """The Arrow schema of a shard, with ``metadata`` stamped on it."""
    return pa.schema(
        [
            pa.field("doc_id", pa.string(), nullable=False),
            pa.field("ids", pa.list_(pa.field("item", getattr(pa, metadata.dtype)(), nullable=False)), nullable=False),
            pa.field("source_bytes", pa.int64(), nullable=False),
            pa.field("words", pa.int64(), nullable=False),
        ],
        metadata={METADATA_KEY: metadata.to_bytes()},
    )
