"""The shards stage: every split of ingest's documents -> token shards and a manifest per split.

Input: ``<ingest_dir>/documents.parquet`` and the tokenizer directory (its ``tokenizer.json`` must match
``tokenizer.sha256``). Output in ``out_dir``: ``train/train-00000.parquet`` ... ``test/test-0000k.parquet`` (layout in
``arcore.shards.schema``) and ``train.manifest.json``, ``valid.manifest.json``, ``test.manifest.json``
(``arcore.shards.manifest``). Every split gets a manifest, an empty valid/test split one with no shards.

Map and reduce: documents are read in batches, each batch is encoded by the pure ``encode_documents``
(the map), and ``ShardWriter`` (the reduce) cuts the ordered stream into shards. Without a mapper the
map runs here, its Rust half in a worker thread overlapping its Python half ``lay_out``; with one
(``arcore.parallel``, e.g. the pipeline's Dask runner) every batch is an ``EncodeJob`` mapped in order.
Shard boundaries depend on documents and ``shard_tokens`` only, so both give byte-identical shards.

Resume: when ``out_dir`` already holds a manifest for a split (a relaunch after a kill), its shards are
checked against their sha256 and against the current tokenizer's digest, the sha256 of
``documents.parquet`` and the settings, the documents they
cover are skipped without encoding, and writing continues at the first shard without an entry. The
result is byte-identical to an uninterrupted run. Shards from another tokenizer or with a changed
checksum are refused with a ``StageError``.
"""

from __future__ import annotations

import hashlib
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Iterator

from tokenizers import Encoding

from arcore.errors import InputError, StageError
from arcore.shards.config import ShardsConfig
from arcore.parallel import OptionalMapper
from arcore.shards.encode import EncodedBatch, EncodeJob, encode_job, lay_out
from arcore.shards.manifest import TOTALS, ShardManifest, check_tokenizer, read_manifest, verify_shards
from arcore.shards.schema import ids_dtype, manifest_name
from arcore.shards.writer import ShardWriter
from arcore.stage import Progress, StageOutput
from arcore.io import sha256_file
from arcore.tokenize.corpus import SPLITS, count_documents, documents_path, iter_document_batches
from arcore.tokenize.store import TOKENIZER_FILE, LoadedTokenizer, load_tokenizer


# A resumed split must have been started with the same values, or its shards would not fit together.
_MUST_MATCH = (
    "documents_sha256", "vocab_size", "dtype", "bos_id", "eos_id", "unk_id", "shard_tokens", "compression",
    "compression_level", "format",
)
Batches = Iterator[tuple[list[str], list[str]]]


def build_shards(
    cfg: ShardsConfig, ingest_dir: Path, tokenizer_dir: Path, out_dir: Path, progress: Progress = None,
    mapper: OptionalMapper = None,
) -> StageOutput:
    """Encode every split and write its shards and manifest into ``out_dir`` (resuming if started).

    ``mapper`` (``arcore.parallel``) runs the encoding of each batch elsewhere; ``None`` encodes here."""
    out_dir = Path(out_dir)
    loaded = load_tokenizer(tokenizer_dir)
    total = count_documents(ingest_dir)
    documents_sha256 = sha256_file(documents_path(ingest_dir))
    tokenizer_json = _tokenizer_json(loaded, tokenizer_dir) if mapper is not None else ""
    done = 0
    started = time.perf_counter()
    encoded_bytes = 0
    metrics: dict[str, float] = {}
    records: dict[str, int] = {}
    for split in SPLITS:
        manifest = _start_or_resume(cfg, loaded, documents_sha256, out_dir, split)
        records[f"{split}_resumed_shards"] = len(manifest.shards)
        done += manifest.documents
        if not manifest.complete:
            _remove_leftovers(out_dir, split)
            documents = iter_document_batches(ingest_dir, split, cfg.batch_documents, cfg.batch_chars)
            batches = _skip(documents, manifest.documents)
            with ShardWriter(out_dir, manifest) as writer:
                encoded = _encode_ahead(loaded, batches, manifest.dtype) if mapper is None else \
                    mapper(encode_job, _jobs(loaded, tokenizer_json, batches, manifest.dtype))
                for batch in encoded:
                    writer.add(batch)
                    encoded_bytes += int(batch.source_bytes.sum())
                    done += batch.documents
                    if progress is not None:
                        progress(done, total)
            manifest = writer.manifest
        if split == "train" and manifest.documents == 0:
            raise InputError("the train split has no documents: nothing to train a model on; check the ingest sources")
        for name in TOTALS:
            records[f"{split}_{name}"] = getattr(manifest, name)
        records[f"{split}_shards"] = len(manifest.shards)
        if manifest.tokens:
            metrics[f"{split}_tokens"] = float(manifest.tokens)
            metrics[f"{split}_bytes_per_token"] = manifest.source_bytes / manifest.tokens
            metrics[f"{split}_unk_rate"] = manifest.unk_tokens / manifest.tokens
    seconds = time.perf_counter() - started
    if encoded_bytes:
        metrics["encode_mb_per_s"] = encoded_bytes / 1e6 / seconds
    return StageOutput(metrics=metrics, records=records, artifacts=tuple(manifest_name(s) for s in SPLITS))


def _start_or_resume(
    cfg: ShardsConfig, loaded: LoadedTokenizer, documents_sha256: str, out_dir: Path, split: str
) -> ShardManifest:
    """A fresh manifest for ``split``, or the one already in ``out_dir`` after checking it may be continued."""
    fresh = ShardManifest(
        split=split, tokenizer_sha256=loaded.sha256, documents_sha256=documents_sha256, vocab_size=loaded.vocab_size, dtype=ids_dtype(loaded.vocab_size),
        bos_id=loaded.bos_id, eos_id=loaded.eos_id, unk_id=loaded.unk_id, shard_tokens=cfg.shard_tokens,
        compression=cfg.compression, compression_level=cfg.compression_level,
    )
    existing = read_manifest(out_dir, split)
    if existing is None:
        return fresh
    check_tokenizer(existing, loaded.sha256, out_dir)
    for name in _MUST_MATCH:
        if getattr(existing, name) != getattr(fresh, name):
            raise StageError(
                f"{out_dir / manifest_name(split)} was written with {name}={getattr(existing, name)!r}, now "
                f"{getattr(fresh, name)!r}: rerun the shards stage into an empty directory"
            )
    verify_shards(out_dir, existing)
    return existing


def _encode_ahead(loaded: LoadedTokenizer, batches: Batches, dtype: str) -> Iterator[EncodedBatch]:
    """``encode_documents`` for each batch, in order, with the Rust half of batch k + 1 running meanwhile.

    ``encode_batch_fast`` releases the GIL, so it runs in a worker thread while this thread lays out
    batch k (``lay_out``), writes shards and reads the next documents: the stage is then bound by the
    encoder alone. At most two batches are in flight, which keeps memory bounded.
    """

    def rust_half(texts: list[str]) -> list[Encoding]:
        return loaded.tokenizer.encode_batch_fast(texts, add_special_tokens=False)

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="encode") as pool:
        pending: tuple[list[str], list[str], Future[list[Encoding]]] | None = None
        for doc_ids, texts in batches:
            submitted = (doc_ids, texts, pool.submit(rust_half, texts))
            if pending is not None:
                yield lay_out(pending[0], pending[1], pending[2].result(), loaded.eos_id, loaded.unk_id, dtype)
            pending = submitted
        if pending is not None:
            yield lay_out(pending[0], pending[1], pending[2].result(), loaded.eos_id, loaded.unk_id, dtype)


def _tokenizer_json(loaded: LoadedTokenizer, tokenizer_dir: Path) -> str:
    """The exact ``tokenizer.json`` that ``loaded`` came from, for jobs encoded in other processes."""
    path = Path(tokenizer_dir) / TOKENIZER_FILE
    data = path.read_bytes()
    if hashlib.sha256(data).hexdigest() != loaded.sha256:
        raise StageError(f"{path} changed while the shards stage was running; rerun the tokenizer stage")
    return data.decode("utf-8")


def _jobs(loaded: LoadedTokenizer, tokenizer_json: str, batches: Batches, dtype: str) -> Iterator[EncodeJob]:
    for doc_ids, texts in batches:
        yield EncodeJob(loaded.sha256, tokenizer_json, doc_ids, texts, loaded.eos_id, loaded.unk_id, dtype)


def _skip(batches: Batches, documents: int) -> Batches:
    """Drop the first ``documents`` documents (already in shards) from a stream of batches."""
    for doc_ids, texts in batches:
        if documents >= len(doc_ids):
            documents -= len(doc_ids)
            continue
        yield doc_ids[documents:], texts[documents:]
        documents = 0
        yield from batches
        return


def _remove_leftovers(out_dir: Path, split: str) -> None:
    """Temp files of a killed write (finished but unlisted shards are simply rewritten)."""
    for tmp in (*out_dir.glob(f".{split}-*.parquet.tmp"), *out_dir.glob(f"{split}/.{split}-*.parquet.tmp")):
        tmp.unlink()
