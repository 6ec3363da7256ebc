"""Readers: input specs -> files -> raw documents, one generator per format.

In: ``InputSpec`` paths (files, directories, globs). Out: ``RawDoc(text, source)`` per document, text
decoded but not yet normalized (see normalize.py). Problems a user can cause raise ``InputError`` with
the file (and line or byte offset) named; ``SkipFile``/``SkipRecord`` carry problems that the
``on_error=skip`` policy turns into report entries instead.

Byte offsets in errors count from the start of the (decompressed) file, so ``head -c`` finds them.
"""

from __future__ import annotations

import glob
import gzip
import json
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional

from arcore.errors import InputError
from arcore.ingest.config import InputSpec
from arcore.ingest.normalize import Repairs


@dataclass(frozen=True)
class RawDoc:
    text: str
    source: str


@dataclass(frozen=True)
class InputFile:
    path: Path
    split: Optional[str]


class SkipFile(Exception):
    """The whole file is unusable; under on_error=skip it is listed in the report and left out."""


class SkipRecord(Exception):
    """One record is unusable; under on_error=skip it is counted in the report and left out."""


def resolve_inputs(specs: list[InputSpec], base: Optional[Path] = None) -> list[InputFile]:
    """Expand files, directories (recursively, sorted) and globs; a file named twice is read once.

    Relative paths are tried against the working directory, then ``base`` (the project root, where
    the bundled ``data/`` lives). A path that matches nothing is an error: a typo must not silently
    produce a smaller corpus.
    """
    files: dict[Path, InputFile] = {}
    for spec in specs:
        matches = _expand(spec.path, base)
        if not matches:
            raise InputError(f"input not found: {spec.path!r} (no such file, directory or glob match)")
        for path in matches:
            files.setdefault(path, InputFile(path=path, split=spec.split))
    return list(files.values())


def _expand(pattern: str, base: Optional[Path]) -> list[Path]:
    candidates = [Path(pattern)]
    if base is not None and not Path(pattern).is_absolute():
        candidates.append(base / pattern)
    for candidate in candidates:
        if glob.has_magic(str(candidate)):
            hits = sorted(Path(p) for p in glob.glob(str(candidate), recursive=True))
            hits = [h for h in hits if h.is_file()]
        elif candidate.is_dir():
            hits = sorted(p for p in candidate.rglob("*") if p.is_file() and not p.name.startswith("."))
        elif candidate.exists() or candidate.is_symlink():
            hits = [candidate]
        else:
            continue
        if hits:
            return [h.resolve() if h.exists() else h.absolute() for h in hits]
    return []


def file_format(path: Path) -> str:
    name = path.name.lower()
    if name.endswith(".gz"):
        name = name[:-3]
    if name.endswith(".jsonl") or name.endswith(".ndjson"):
        return "jsonl"
    if name.endswith(".parquet"):
        return "parquet"
    return "text"


def _open_binary(path: Path):
    if path.name.lower().endswith(".gz"):
        return gzip.open(path, "rb")
    return open(path, "rb")


def _binary_lines(path: Path) -> Iterator[tuple[int, int, bytes]]:
    """(line number, byte offset, line without its ``\\n``) for a plain or gzip text file."""
    try:
        with _open_binary(path) as f:
            offset = 0
            for lineno, raw in enumerate(f, start=1):
                line = raw[:-1] if raw.endswith(b"\n") else raw
                yield lineno, offset, line
                offset += len(raw)
    except (EOFError, gzip.BadGzipFile, zlib.error) as e:
        raise SkipFile(f"{path}: truncated or corrupt gzip stream ({e})") from None
    except OSError as e:
        raise SkipFile(f"{path}: cannot read ({e.strerror or e})") from None


def decode_utf8(raw: bytes, policy: str, where: str, offset: int, repairs: Repairs) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        if policy == "strict":
            raise InputError(
                f"{where}: invalid UTF-8 at byte offset {offset + e.start} "
                f"(byte 0x{raw[e.start]:02x}); fix the file or set ingest.encoding_errors=replace"
            ) from None
    text = raw.decode("utf-8", errors="replace")
    repairs.invalid_utf8_replaced += text.count("\ufffd") - raw.count("\ufffd".encode("utf-8"))
    return text


def decode_line(raw: bytes, policy: str, where: str, offset: int, repairs: Repairs) -> str:
    """A line without its terminator; a CRLF terminator counts as a newline repair."""
    if raw.endswith(b"\r"):
        raw = raw[:-1]
        repairs.newlines_normalized += 1
    return decode_utf8(raw, policy, where, offset, repairs)


def read_text(path: Path, unit: str, policy: str, repairs: Repairs) -> Iterator[RawDoc]:
    """Plain text cut into documents by ``unit``; whitespace-only documents are yielded too, so the
    caller can count them (nothing disappears without a count)."""
    if unit == "file":
        lines = [decode_line(raw, policy, f"{path}:{n}", off, repairs) for n, off, raw in _binary_lines(path)]
        yield RawDoc("\n".join(lines).strip("\n"), f"{path}:1")
        return
    para: list[str] = []
    start = 0
    for lineno, offset, raw in _binary_lines(path):
        text = decode_line(raw, policy, f"{path}:{lineno}", offset, repairs)
        if unit == "line":
            yield RawDoc(text, f"{path}:{lineno}")
        elif text.strip():
            if not para:
                start = lineno
            para.append(text)
        elif para:
            yield RawDoc("\n".join(para), f"{path}:{start}")
            para = []
    if para:
        yield RawDoc("\n".join(para), f"{path}:{start}")


def read_jsonl(path: Path, field: str, policy: str, repairs: Repairs) -> Iterator[RawDoc | SkipRecord]:
    """One document per JSON object; a bad line is yielded as a SkipRecord for the caller's policy."""
    for lineno, offset, raw in _binary_lines(path):
        where = f"{path}:{lineno}"
        line = decode_line(raw, policy, where, offset, repairs)
        if not line.strip():
            yield RawDoc("", where)
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            yield SkipRecord(f"{where}: not valid JSON ({e.msg} at column {e.colno})")
            continue
        if not isinstance(record, dict) or field not in record:
            yield SkipRecord(f"{where}: no field {field!r} (set ingest.text_field)")
            continue
        value = record[field]
        if not isinstance(value, str):
            yield SkipRecord(f"{where}: field {field!r} is {type(value).__name__}, not a string")
            continue
        yield RawDoc(value, where)


def read_parquet(path: Path, column: str) -> Iterator[RawDoc | SkipRecord]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as e:
        raise SkipFile(f"{path}: not a readable Parquet file ({e})") from None
    names = pf.schema_arrow.names
    if column not in names:
        raise InputError(f"{path}: no column {column!r} (columns: {', '.join(names)}); set ingest.text_column")
    col_type = pf.schema_arrow.field(column).type
    if not (pa.types.is_string(col_type) or pa.types.is_large_string(col_type)):
        raise InputError(f"{path}: column {column!r} has type {col_type}, expected a string column")
    row = 0
    try:
        for batch in pf.iter_batches(columns=[column], batch_size=8192):
            for value in batch.column(0).to_pylist():
                if value is None:
                    yield SkipRecord(f"{path}#{row}: null {column!r}")
                else:
                    yield RawDoc(value, f"{path}#{row}")
                row += 1
    except (pa.ArrowException, OSError) as e:
        raise SkipFile(f"{path}: corrupt Parquet data after row {row} ({e})") from None


def read_file(path: Path, cfg, repairs: Repairs) -> Iterator[RawDoc | SkipRecord]:
    kind = file_format(path)
    if kind == "jsonl":
        return read_jsonl(path, cfg.text_field, cfg.encoding_errors, repairs)
    if kind == "parquet":
        return read_parquet(path, cfg.text_column)
    return read_text(path, cfg.unit, cfg.encoding_errors, repairs)
