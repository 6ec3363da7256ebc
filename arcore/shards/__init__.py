"""Shards stage: encode every split with the trained tokenizer into zstd Parquet token shards.

Modules: ``config`` (ShardsConfig), ``schema`` (the Parquet schema, file names, metadata), ``encode``
(the pure map: documents -> ids), ``writer`` (the reduce: ids -> shards), ``manifest`` (per-split
manifest, checksums), ``build`` (``build_shards``, the stage function, with resume), ``reader``
(flat ids, ``batchify``, BPTT windows, split statistics).
"""

from arcore.shards.build import build_shards
from arcore.shards.config import ShardsConfig
from arcore.shards.encode import EncodedBatch, encode_documents
from arcore.shards.manifest import ShardEntry, ShardManifest, load_complete_manifest, read_manifest, verify_shards
from arcore.shards.reader import SplitStats, batchify, bptt_windows, iter_shard_ids, read_ids, split_stats
from arcore.shards.schema import BOUNDARY, ShardMetadata, ids_dtype, shard_name, shard_schema
from arcore.shards.writer import ShardWriter

__all__ = [
    "BOUNDARY",
    "EncodedBatch",
    "ShardEntry",
    "ShardManifest",
    "ShardMetadata",
    "ShardWriter",
    "ShardsConfig",
    "SplitStats",
    "batchify",
    "bptt_windows",
    "build_shards",
    "encode_documents",
    "ids_dtype",
    "iter_shard_ids",
    "load_complete_manifest",
    "read_ids",
    "read_manifest",
    "shard_name",
    "shard_schema",
    "split_stats",
    "verify_shards",
]
