"""The per-split manifest: which shards exist, their checksums and counts, and who wrote them.

Output file: ``<shards_dir>/<split>.manifest.json``, rewritten atomically after every shard. While a split
is being written ``complete`` is false and ``shards`` lists the shards finished so far, in order; a
relaunch verifies them and resumes at the first shard without an entry. ``complete: true`` is written
last and means the split is done.

Lineage: ``tokenizer_sha256`` (of ``tokenizer.json``) and ``documents_sha256`` (of ingest's
``documents.parquet``) say exactly which inputs the ids come from.

Counts (per shard and totals): documents; tokens (every id stored, each document's ``</s>`` included);
source_bytes (sum of ``len(text.encode("utf-8")) + 1`` per document: the bits-per-byte denominator);
words (whitespace words, no boundary: the per-word perplexity denominator is ``words`` or
``words + documents`` if ``</s>`` counts as a word, as KenLM counts it); unk_tokens; oversized_documents
(documents longer than ``shard_tokens``, each alone in its shard).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from arcore.errors import StageError
from arcore.shards.schema import BOUNDARY, FORMAT, manifest_name
from arcore.io import atomic_write_bytes, sha256_file


TOTALS = ("documents", "tokens", "source_bytes", "words", "unk_tokens", "oversized_documents")


@dataclass(frozen=True)
class ShardEntry:
    file: str
    sha256: str
    file_bytes: int
    first_document: int
    documents: int
    tokens: int
    source_bytes: int
    words: int
    unk_tokens: int
    oversized_documents: int


@dataclass(frozen=True)
class ShardManifest:
    split: str
    tokenizer_sha256: str
    documents_sha256: str
    vocab_size: int
    dtype: str
    bos_id: int
    eos_id: int
    unk_id: int
    shard_tokens: int
    compression: str
    compression_level: int
    complete: bool = False
    shards: tuple[ShardEntry, ...] = ()
    boundary: str = BOUNDARY
    format: str = FORMAT

    documents: int = field(init=False)
    tokens: int = field(init=False)
    source_bytes: int = field(init=False)
    words: int = field(init=False)
    unk_tokens: int = field(init=False)
    oversized_documents: int = field(init=False)

    def __post_init__(self) -> None:
        for name in TOTALS:
            object.__setattr__(self, name, sum(getattr(entry, name) for entry in self.shards))

    def with_shard(self, entry: ShardEntry) -> "ShardManifest":
        return replace(self, shards=self.shards + (entry,))

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str) -> "ShardManifest":
        data = json.loads(text)
        totals = {name: data.pop(name) for name in TOTALS}
        data["shards"] = tuple(ShardEntry(**entry) for entry in data["shards"])
        manifest = cls(**data)
        if any(getattr(manifest, name) != value for name, value in totals.items()):
            raise ValueError("totals do not equal the sum of the shard entries")
        return manifest


def write_manifest(shards_dir: Path, manifest: ShardManifest) -> None:
    atomic_write_bytes(Path(shards_dir) / manifest_name(manifest.split), manifest.to_json().encode("utf-8"))


def read_manifest(shards_dir: Path, split: str) -> ShardManifest | None:
    """The split's manifest, or None when there is none yet; StageError when it cannot be parsed."""
    path = Path(shards_dir) / manifest_name(split)
    if not path.is_file():
        return None
    try:
        return ShardManifest.from_json(path.read_text(encoding="utf-8"))
    except (ValueError, TypeError, KeyError) as exc:
        raise StageError(f"{path} is not a valid shard manifest ({exc}); delete it and rerun the shards stage") from exc


def load_complete_manifest(shards_dir: Path, split: str, tokenizer_sha256: str | None = None) -> ShardManifest:
    """The manifest of a finished split; StageError if missing, unfinished or from another tokenizer."""
    manifest = read_manifest(shards_dir, split)
    path = Path(shards_dir) / manifest_name(split)
    if manifest is None:
        raise StageError(f"{path} not found: run the shards stage first")
    if not manifest.complete:
        raise StageError(f"{path} is unfinished (the shards stage was interrupted): rerun the shards stage")
    if tokenizer_sha256 is not None:
        check_tokenizer(manifest, tokenizer_sha256, shards_dir)
    return manifest


def check_tokenizer(manifest: ShardManifest, tokenizer_sha256: str, shards_dir: Path) -> None:
    """Refuse shards written by a tokenizer other than the one with digest ``tokenizer_sha256``."""
    if manifest.tokenizer_sha256 != tokenizer_sha256:
        raise StageError(
            f"{manifest.split} shards in {shards_dir} were written by tokenizer {manifest.tokenizer_sha256[:12]}…, "
            f"not by the current tokenizer {tokenizer_sha256[:12]}…: rerun the shards stage into an empty directory"
        )


def verify_shards(shards_dir: Path, manifest: ShardManifest) -> None:
    """Check every listed shard exists with the recorded sha256; StageError naming the first bad one."""
    for entry in manifest.shards:
        path = Path(shards_dir) / entry.file
        if not path.is_file():
            raise StageError(
                f"shard {path} listed in {manifest_name(manifest.split)} is missing: rerun the shards stage"
            )
        actual = sha256_file(path)
        if actual != entry.sha256:
            raise StageError(
                f"shard {path} has sha256 {actual[:12]}… but its manifest says {entry.sha256[:12]}… (changed or "
                "truncated): delete the shards directory and rerun the shards stage"
            )
