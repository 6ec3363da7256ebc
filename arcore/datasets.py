"""datasets: which data a stage read, described so a tracking store can record it as the run's inputs.

Input: the complete output directory of ``ingest`` (``documents.parquet``) or ``shards`` (one directory of
token shards per split) and a split. Output: a ``SplitDataset`` (name, digest, where it is, its columns, its
counts) per split read. What it adds over the stage manifests: one record per split, under the same name and
digest in every run that read the same data, so runs that saw the same documents or shards can be found by it.

Names and digests (the digest is 32 hex digits of a SHA-256, what MLflow's 36-character field holds):

- ``shards-<split>``: the digest is that of ``<split>.manifest.json`` as the shards stage recorded it, and that
  file lists every shard of the split with its own SHA-256, so equal digests mean the same token ids;
- ``documents-<split>``: ingest writes the splits into one ``documents.parquet``, so the digest is that of
  ``"<sha256 of documents.parquet>:<split>"``, e.g. ``documents-valid`` of the file ``9f3a...`` is
  ``sha256("9f3a...:valid")[:32]``; the file's own SHA-256 is in ``source``.

The counts (``profile``) are the stage's own: documents and bytes of text per split from ingest (UTF-8,
without the document boundary); documents, tokens (``</s>`` included), source bytes (one boundary byte per
document included), words, unknown tokens and shard files from the split's shard manifest.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from arcore.errors import StageError
from arcore.ingest.schema import DOCUMENTS_FILE, SPLITS
from arcore.shards.manifest import read_manifest
from arcore.shards.schema import manifest_name
from arcore.stage import MANIFEST, Manifest

# The splits of the upstream output each stage reads (arcore's build functions): the tokenizer trains on
# train and measures itself on valid, the models train on train and report or stop on valid, evaluate
# scores valid (and fits mixture weights on it) and test.
STAGE_READS: Mapping[str, tuple[str, tuple[str, ...]]] = {
    "tokenizer": ("ingest", ("train", "valid")),
    "shards": ("ingest", SPLITS),
    "ngram": ("shards", ("train", "valid")),
    "rnn": ("shards", ("train", "valid")),
    "transformer": ("shards", ("train", "valid")),
    "infinigram": ("shards", ("train", "valid")),
    "evaluate": ("shards", ("valid", "test")),
}
# How a split is used, in the words of MLflow's ``mlflow.data.context`` input tag.
CONTEXT = {"train": "training", "valid": "validation", "test": "test"}
DIGEST_CHARS = 32


@dataclass(frozen=True)
class SplitDataset:
    name: str  # "shards-train"
    digest: str
    split: str
    uri: str  # file URI of the data: documents.parquet, or the split's shard directory
    sha256: str  # of documents.parquet, or of the split's shard manifest
    columns: tuple[tuple[str, str], ...]  # (name, Arrow type) of each column
    profile: Mapping[str, int]

    @property
    def context(self) -> str:
        return CONTEXT[self.split]


def _columns(parquet_file: Path) -> tuple[tuple[str, str], ...]:
    import pyarrow.parquet as pq

    return tuple((field.name, str(field.type)) for field in pq.read_schema(parquet_file))


def split_dataset(stage_dir: Path, split: str) -> SplitDataset:
    """The ``split`` of a complete ingest or shards output as a dataset (see the module docstring)."""
    stage_dir = Path(stage_dir)
    manifest = Manifest.read(stage_dir / MANIFEST)
    if manifest.stage == "ingest":
        sha = manifest.files[DOCUMENTS_FILE]["sha256"]
        profile = {figure: int(manifest.metrics.get(f"{figure}_{split}", 0)) for figure in ("documents", "bytes")}
        return SplitDataset(
            name=f"documents-{split}", digest=hashlib.sha256(f"{sha}:{split}".encode()).hexdigest()[:DIGEST_CHARS],
            split=split, uri=(stage_dir / DOCUMENTS_FILE).resolve().as_uri(), sha256=sha,
            columns=_columns(stage_dir / DOCUMENTS_FILE), profile=profile)
    if manifest.stage == "shards":
        shards = read_manifest(stage_dir, split)
        if shards is None:
            raise StageError(f"no {manifest_name(split)} in {stage_dir}; rerun the shards stage")
        sha = manifest.files[manifest_name(split)]["sha256"]
        profile = {"documents": shards.documents, "tokens": shards.tokens, "source_bytes": shards.source_bytes,
                   "words": shards.words, "unk_tokens": shards.unk_tokens, "shards": len(shards.shards)}
        columns = _columns(stage_dir / shards.shards[0].file) if shards.shards else ()
        return SplitDataset(
            name=f"shards-{split}", digest=sha[:DIGEST_CHARS], split=split,
            uri=(stage_dir / split).resolve().as_uri(), sha256=sha, columns=columns, profile=profile)
    raise StageError(f"{stage_dir} is a {manifest.stage} output; datasets are read from ingest or shards outputs")


def stage_datasets(stage: str, upstream_dirs: Mapping[str, Path]) -> list[SplitDataset]:
    """The datasets stage ``stage`` read, from its upstream outputs (``{"shards": dir, ...}``); none for a
    stage that reads no split (ingest reads the input files)."""
    if stage not in STAGE_READS:
        return []
    source, splits = STAGE_READS[stage]
    return [split_dataset(Path(upstream_dirs[source]), split) for split in splits]
