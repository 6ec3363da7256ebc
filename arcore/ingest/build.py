"""The ingest stage: raw inputs -> normalized, deduplicated, split documents table + report.

In: ``IngestConfig`` (inputs, unit, policies, split fractions). Out, in ``out_dir``:
``documents.parquet`` (schema.py) and ``report.json``: documents and bytes per split, duplicates
dropped, repairs made, empty documents, files and records skipped and why.

Accounting (every raw document ends up in exactly one bucket, and the report proves it):
raw = written + duplicates + empty + records skipped. A file is read completely before its documents
are kept, so a file that fails half-way (truncated .gz) contributes nothing or fails the stage.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import pyarrow as pa
import pyarrow.parquet as pq

from arcore.errors import InputError
from arcore.ingest.config import IngestConfig
from arcore.ingest.normalize import Repairs, normalize_text
from arcore.ingest.readers import InputFile, SkipFile, SkipRecord, read_file, resolve_inputs
from arcore.ingest.schema import DOCUMENTS_FILE, DOCUMENTS_SCHEMA, REPORT_FILE, SPLITS
from arcore.ingest.split import hash_split
from arcore.io import DigestCache, atomic_write_text, digest_strings
from arcore.stage import Progress, StageOutput

ROW_GROUP_BYTES = 64 << 20
MAX_LISTED = 100  # skipped files/records listed by name in the report; all are counted


@dataclass
class IngestReport:
    files_read: int = 0
    raw_documents: int = 0
    duplicates_dropped: int = 0
    empty_documents: int = 0
    documents: dict = field(default_factory=lambda: {s: 0 for s in SPLITS})
    bytes: dict = field(default_factory=lambda: {s: 0 for s in SPLITS})
    repairs: Repairs = field(default_factory=Repairs)
    files_skipped: list = field(default_factory=list)
    records_skipped: int = 0
    records_skipped_examples: list = field(default_factory=list)

    def as_dict(self) -> dict:
        return {
            "files_read": self.files_read,
            "raw_documents": self.raw_documents,
            "documents": dict(self.documents),
            "bytes": dict(self.bytes),
            "duplicates_dropped": self.duplicates_dropped,
            "empty_documents": self.empty_documents,
            "repairs": self.repairs.as_dict(),
            "files_skipped": list(self.files_skipped),
            "records_skipped": self.records_skipped,
            "records_skipped_examples": list(self.records_skipped_examples),
        }


def project_root() -> Path:
    """Where the bundled ``data/`` lives (the checkout this package runs from)."""
    return Path(__file__).resolve().parents[2]


def input_files(cfg: IngestConfig) -> list[InputFile]:
    return resolve_inputs(cfg.input_specs, base=project_root())


def build_ingest(cfg: IngestConfig, out_dir: Path, progress: Progress = None) -> StageOutput:
    files = input_files(cfg)
    report = IngestReport()
    seen: set[bytes] = set()
    with _DocumentsWriter(out_dir / DOCUMENTS_FILE) as writer:
        for i, f in enumerate(files):
            docs = _read_whole_file(f, cfg, report)
            if docs is None:
                continue
            report.files_read += 1
            if not docs:
                report.files_skipped.append({"path": str(f.path), "reason": "empty: no documents"})
            for doc in docs:
                _admit(doc, f, cfg, report, seen, writer)
            if progress:
                progress(i + 1, len(files))
    total = sum(report.documents.values())
    if total == 0:
        raise InputError(
            f"inputs yield no documents ({len(files)} file(s), {report.files_read} read, "
            f"{report.empty_documents} empty, {report.duplicates_dropped} duplicate, "
            f"{report.records_skipped} bad record(s), {len(report.files_skipped)} file(s) skipped)"
        )
    if report.documents["train"] == 0:
        raise InputError(
            f"the train split is empty ({total} document(s) in all); lower ingest.valid_fraction/"
            "test_fraction or assign an input to split 'train'"
        )
    atomic_write_text(out_dir / REPORT_FILE, json.dumps(report.as_dict(), indent=2) + "\n")
    metrics = {f"documents_{s}": float(n) for s, n in report.documents.items()}
    metrics.update({f"bytes_{s}": float(n) for s, n in report.bytes.items()})
    metrics.update(
        duplicates_dropped=float(report.duplicates_dropped),
        empty_documents=float(report.empty_documents),
        repairs=float(report.repairs.total()),
        files_skipped=float(len(report.files_skipped)),
        records_skipped=float(report.records_skipped),
    )
    return StageOutput(
        metrics=metrics,
        records={"documents": total, **{f"documents_{s}": n for s, n in report.documents.items()}},
        artifacts=(REPORT_FILE,),
    )


def _read_whole_file(f: InputFile, cfg: IngestConfig, report: IngestReport) -> Optional[list]:
    """All documents of one file, or None if the file is skipped under on_error=skip."""
    try:
        if f.path.stat().st_size == 0:
            report.files_skipped.append({"path": str(f.path), "reason": "empty file"})
            return None
        repairs = Repairs()
        docs = list(read_file(f.path, cfg, repairs))
    except SkipFile as e:
        if cfg.on_error == "fail":
            raise InputError(f"{e}; set ingest.on_error=skip to leave such files out") from None
        report.files_skipped.append({"path": str(f.path), "reason": str(e)})
        return None
    except OSError as e:
        msg = f"{f.path}: cannot read ({e.strerror or e})"
        if cfg.on_error == "fail":
            raise InputError(f"{msg}; set ingest.on_error=skip to leave such files out") from None
        report.files_skipped.append({"path": str(f.path), "reason": msg})
        return None
    for name, n in repairs.as_dict().items():
        setattr(report.repairs, name, getattr(report.repairs, name) + n)
    return docs


def _admit(doc, f: InputFile, cfg: IngestConfig, report: IngestReport, seen: set, writer) -> None:
    if isinstance(doc, SkipRecord):
        if cfg.on_error == "fail":
            raise InputError(f"{doc}; fix the record or set ingest.on_error=skip")
        report.records_skipped += 1
        if len(report.records_skipped_examples) < MAX_LISTED:
            report.records_skipped_examples.append(str(doc))
        return
    report.raw_documents += 1
    text = normalize_text(doc.text, report.repairs)
    if not text.strip():
        report.empty_documents += 1
        return
    data = text.encode("utf-8")
    digest = hashlib.sha256(data).digest()
    if digest in seen:
        report.duplicates_dropped += 1
        return
    seen.add(digest)
    split = f.split or hash_split(digest, cfg.valid_fraction, cfg.test_fraction, cfg.split_salt)
    report.documents[split] += 1
    report.bytes[split] += len(data)
    writer.add(digest.hex()[:32], split, text, doc.source, len(data))


class _DocumentsWriter:
    """Buffers rows and writes row groups of about ROW_GROUP_BYTES of text."""

    def __init__(self, path: Path):
        self.path = path
        self.rows: dict[str, list] = {name: [] for name in DOCUMENTS_SCHEMA.names}
        self.buffered = 0
        self.writer: Optional[pq.ParquetWriter] = None

    def __enter__(self):
        self.writer = pq.ParquetWriter(self.path, DOCUMENTS_SCHEMA, compression="zstd")
        return self

    def add(self, doc_id: str, split: str, text: str, source: str, nbytes: int) -> None:
        for name, value in zip(DOCUMENTS_SCHEMA.names, (doc_id, split, text, source)):
            self.rows[name].append(value)
        self.buffered += nbytes
        if self.buffered >= ROW_GROUP_BYTES:
            self.flush()

    def flush(self) -> None:
        if self.rows["doc_id"]:
            self.writer.write_table(pa.table(self.rows, schema=DOCUMENTS_SCHEMA))
            self.rows = {name: [] for name in DOCUMENTS_SCHEMA.names}
            self.buffered = 0

    def __exit__(self, exc_type, *_):
        if exc_type is None:
            self.flush()
        self.writer.close()


def inputs_digest(cfg: IngestConfig, cache: DigestCache) -> str:
    """Digest of what ingest reads: each input file's path, assigned split and content.

    Content is hashed (through ``cache``, keyed by size and mtime), so editing a file reruns
    everything from ingest while touching it without changes does not. An unreadable file gets a
    marker instead of a digest; the stage itself then reports it under its ``on_error`` policy.
    """
    parts = []
    for f in input_files(cfg):
        try:
            content = cache.sha256(f.path)
        except OSError as e:
            content = f"unreadable:{e.errno}"
        parts.append(f"{f.path}\0{f.split}\0{content}")
    cache.save()
    return digest_strings(parts)
