"""Shard settings: how many tokens per shard, how many documents per encode batch, compression.

Input: the pipeline config's ``shards`` section. Output: a frozen, validated ``ShardsConfig``.

Shard size is counted in tokens (the uncompressed id bytes are ``tokens * 2`` for uint16, ``* 4`` for
uint32), because that is what a reader holds in memory. Batch sizes change speed and memory only, never
the bytes written: shard boundaries depend on documents and ``shard_tokens`` alone, so a relaunch with
other batch sizes still resumes byte-identically.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class ShardsConfig(BaseModel):
    """shard_tokens: target tokens per shard; a shard is closed before a document that would overflow
    it, and a single document longer than that gets a shard of its own (counted as oversized).
    batch_documents / batch_chars: one ``encode_batch`` call covers at most this many documents or
    characters. compression / compression_level: Parquet codec (zstd only) and its level."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    shard_tokens: int = Field(default=1 << 24, ge=1, le=2**31 - 1)
    batch_documents: int = Field(default=1024, ge=1)
    batch_chars: int = Field(default=8 << 20, ge=1)
    compression: Literal["zstd"] = "zstd"
    compression_level: int = Field(default=3, ge=1, le=22)
