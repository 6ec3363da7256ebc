"""The ingest stage: raw inputs -> normalized, deduplicated, split documents table + report.

In: ``IngestConfig`` (inputs, unit, policies, split fractions, row group size). Out, in ``out_dir``:
``documents.parquet`` (schema.py) and ``report.json``: documents and bytes per split, duplicates
dropped, repairs made, empty documents, files and records skipped and why.

Streaming: documents go to the Parquet writer (writer.py) as they are read, in row groups of
``row_group_bytes`` of text; no list of documents is ever held. Exact duplicates are found through a
set of SHA-256 digests of the normalized text (dedup.py: about 33 bytes per unique document once
large), the only state that grows with the corpus. The split is a hash of the digest
(split.py), so it needs no knowledge of other documents, and every count in the report is a running
sum.

Accounting (every raw document ends up in exactly one bucket, and the report proves it):
raw = written + duplicates + empty + records skipped. A file contributes only once it has been read to
its end: its rows wait in a writer transaction and its counts and digests in a ``_FilePart``, so a file
that fails half-way (truncated .gz) contributes nothing or fails the stage, as when files were read
whole. Under ``on_error=fail`` a bad record fails the stage after the rest of its file has been read,
so a file that is also corrupt further on reports the corruption, as before.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from arcore.errors import InputError
from arcore.ingest.config import IngestConfig
from arcore.ingest.dedup import DigestSet
from arcore.ingest.normalize import Repairs, normalize_text
from arcore.ingest.readers import (
    BinaryFile, InputFile, SkipFile, SkipRecord, not_regular_message, read_file, renamed_message, resolve_inputs,
    special_kind,
)
from arcore.ingest.schema import DOCUMENTS_FILE, REPORT_FILE, SPLITS
from arcore.ingest.split import hash_split
from arcore.ingest.writer import DocumentsWriter
from arcore.io import DigestCache, atomic_write_text, digest_strings
from arcore.stage import Progress, StageOutput

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
    binary_files_skipped: int = 0
    records_skipped: int = 0
    records_skipped_examples: list = field(default_factory=list)

    def merge(self, other: "IngestReport") -> None:
        """Add ``other``'s counts (one file's) to these; examples stay capped at MAX_LISTED."""
        self.files_read += other.files_read
        self.raw_documents += other.raw_documents
        self.duplicates_dropped += other.duplicates_dropped
        self.empty_documents += other.empty_documents
        for split in SPLITS:
            self.documents[split] += other.documents[split]
            self.bytes[split] += other.bytes[split]
        for name, n in other.repairs.as_dict().items():
            setattr(self.repairs, name, getattr(self.repairs, name) + n)
        self.files_skipped.extend(other.files_skipped)
        self.binary_files_skipped += other.binary_files_skipped
        self.records_skipped += other.records_skipped
        room = MAX_LISTED - len(self.records_skipped_examples)
        self.records_skipped_examples.extend(other.records_skipped_examples[: max(0, room)])

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
            "binary_files_skipped": self.binary_files_skipped,
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
    seen = DigestSet()
    with DocumentsWriter(out_dir / DOCUMENTS_FILE, cfg.row_group_bytes) as writer:
        for i, f in enumerate(files):
            part = _ingest_file(f, cfg, seen, writer)
            if part.skipped is None:
                writer.commit_file()
                seen.update(part.digests)
                report.merge(part.report)
            else:
                writer.discard_file()
                report.files_skipped.append({"path": f.name, "reason": renamed_message(part.skipped, str(f.path), f.name)})
                report.binary_files_skipped += part.binary
            if progress:
                progress(i + 1, len(files))
    total = sum(report.documents.values())
    if total == 0:
        raise InputError(
            f"inputs yield no documents ({len(files)} file(s), {report.files_read} read, "
            f"{report.empty_documents} empty, {report.duplicates_dropped} duplicate, "
            f"{report.records_skipped} bad record(s), {len(report.files_skipped)} file(s) skipped"
            + (f", {report.binary_files_skipped} of them binary" if report.binary_files_skipped else "")
            + "); nothing textual is left to train on"
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
        binary_files_skipped=float(report.binary_files_skipped),
        records_skipped=float(report.records_skipped),
    )
    return StageOutput(
        metrics=metrics,
        records={"documents": total, **{f"documents_{s}": n for s, n in report.documents.items()}},
        artifacts=(REPORT_FILE,),
    )


@dataclass
class _FilePart:
    """What one input file adds, kept apart until the file has been read to its end."""

    report: IngestReport = field(default_factory=lambda: IngestReport(files_read=1))
    digests: DigestSet = field(default_factory=DigestSet)  # digests first seen in this file
    skipped: Optional[str] = None  # why the whole file is left out (on_error=skip, binary, or empty)
    binary: bool = False


def _ingest_file(f: InputFile, cfg: IngestConfig, seen: DigestSet, writer: DocumentsWriter) -> _FilePart:
    """Stream one file's documents into ``writer``'s open transaction; the caller commits or discards."""
    part = _FilePart()
    items = 0
    bad_record: Optional[SkipRecord] = None
    try:
        kind = special_kind(f.path)  # stat only: a named pipe is never opened
        if kind is not None:
            raise SkipFile(not_regular_message(f.path, kind))
        if f.path.stat().st_size == 0:
            part.skipped = "empty file"
            return part
        for doc in read_file(f.path, cfg, part.report.repairs, source=f.name):
            items += 1
            if isinstance(doc, SkipRecord) and cfg.on_error == "fail":
                bad_record = bad_record or doc  # raised below, once the file has read to its end
            elif bad_record is None:
                _admit(doc, f, cfg, part, seen, writer)
    except BinaryFile as e:  # whatever on_error says: folders hold images and archives beside text
        part.skipped, part.binary = str(e), True
        return part
    except SkipFile as e:
        if cfg.on_error == "fail":
            raise InputError(f"{e}; set ingest.on_error=skip to leave such files out") from None
        part.skipped = str(e)
        return part
    except OSError as e:
        msg = f"{f.path}: cannot read ({e.strerror or e})"
        if cfg.on_error == "fail":
            raise InputError(f"{msg}; set ingest.on_error=skip to leave such files out") from None
        part.skipped = msg
        return part
    if bad_record is not None:
        raise InputError(f"{bad_record}; fix the record or set ingest.on_error=skip")
    if items == 0:
        part.report.files_skipped.append({"path": f.name, "reason": "empty: no documents"})
    return part


def _admit(doc, f: InputFile, cfg: IngestConfig, part: _FilePart, seen: DigestSet, writer: DocumentsWriter) -> None:
    report = part.report
    if isinstance(doc, SkipRecord):
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
    if digest in seen or digest in part.digests:
        report.duplicates_dropped += 1
        return
    part.digests.add(digest)
    split = f.split or hash_split(digest, cfg.valid_fraction, cfg.test_fraction, cfg.split_salt)
    report.documents[split] += 1
    report.bytes[split] += len(data)
    writer.add(digest.hex()[:32], split, text, doc.source, len(data))


def inputs_digest(cfg: IngestConfig, cache: DigestCache) -> str:
    """Digest of what ingest reads: each input file's name, assigned split and content.

    Content is hashed (through ``cache``, keyed by size and mtime), so editing a file reruns
    everything from ingest while touching it without changes does not. Names are the inputs' paths
    as spelled (relative to the working directory or the project root for relative inputs), never
    where the checkout lives: a copy of it elsewhere gets the same digest. An unreadable file or one
    that is not a regular file gets a marker instead of a digest (a named pipe is never opened); the
    stage itself then reports it under its ``on_error`` policy.
    """
    parts = []
    for f in input_files(cfg):
        try:
            kind = special_kind(f.path)
            content = f"not-regular:{kind}" if kind is not None else cache.sha256(f.path)
        except OSError as e:
            content = f"unreadable:{e.errno}"
        parts.append(f"{f.name}\0{f.split}\0{content}")
    cache.save()
    return digest_strings(parts)
