"""Readers: input specs -> files -> raw documents, one generator per format.

In: ``InputSpec`` paths (files, directories, globs). Out: ``RawDoc(text, source)`` per document, text
decoded but not yet normalized (see normalize.py). Problems a user can cause raise ``InputError`` with
the file (and line or byte offset) named; ``SkipFile``/``SkipRecord`` carry problems that the
``on_error=skip`` policy turns into report entries instead.

Byte offsets in errors count from the start of the (decompressed) file, so ``head -c`` finds them.

Three guards run before a document is decoded:
- only regular files are opened (``special_kind``): a named pipe, socket or device among the inputs
  would block the first ``open`` or ``read`` forever, so it is refused (or skipped) by its ``stat``;
- binary files are recognized from their first block (``sniff_binary``) and skipped with a count;
- no document holds more than ``max_bytes`` of UTF-8: lines are read in pieces of at most that size
  and documents are cut into segments (``split_text``), so one 60 MB line costs a bounded buffer, not a
  60 MB string in every later stage.
"""

from __future__ import annotations

import glob
import gzip
import json
import os
import stat
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
    """One file to read. ``path`` is absolute; ``name`` is the path as the input spelled it (relative to
    the working directory or the project root when the input was relative), which is what document
    sources and the inputs digest record, so a copy of the checkout elsewhere names the same files."""

    path: Path
    split: Optional[str]
    name: str = ""

    def __post_init__(self):
        if not self.name:
            object.__setattr__(self, "name", str(self.path))


class SkipFile(Exception):
    """The whole file is unusable; under on_error=skip it is listed in the report and left out."""


class SkipRecord(Exception):
    """One record is unusable; under on_error=skip it is counted in the report and left out."""


class BinaryFile(Exception):
    """The file is not text (``sniff_binary``); it is skipped and counted whatever ``on_error`` says."""


# How much of a file decides whether it is text: git's ``buffer_is_binary`` looks at the first 8000
# bytes (FIRST_FEW_BYTES), as does ``sniff_binary``.
SNIFF_BYTES = 8000
# Share of "odd" bytes (NUL, C0 controls other than whitespace/backspace/escape, bytes of invalid UTF-8
# sequences) above which the first block is binary. A PNG, JPEG, ELF, zip or UTF-16 file is far above
# it (UTF-16 text: about half its bytes are NUL); UTF-8 text is at 0, and a text file with a stray NUL
# or a few Latin-1 letters stays below it, so its bytes keep the strict/replace policy and the counted
# NUL repair. This is Perl's -B file test (more than 30% odd characters in the first block).
BINARY_ODD_SHARE = 0.30
_TEXT_CONTROLS = frozenset(b"\t\n\r\f\v\b\x1b")


def special_kind(path: Path) -> Optional[str]:
    """What ``path`` is when it is not a regular file (``"named pipe"``, ``"socket"``, ...), else None.

    Decided from ``stat`` alone (symlinks followed), so a FIFO is never opened: opening one for
    reading blocks until a writer appears. Raises OSError when the path cannot be stat'ed.
    """
    mode = os.stat(path).st_mode
    if stat.S_ISREG(mode):
        return None
    for test, name in ((stat.S_ISFIFO, "named pipe"), (stat.S_ISSOCK, "socket"),
                       (stat.S_ISCHR, "character device"), (stat.S_ISBLK, "block device"),
                       (stat.S_ISDIR, "directory")):
        if test(mode):
            return name
    return "special file"


def not_regular_message(path: Path, kind: str) -> str:
    return f"{path}: not a regular file (a {kind}); ingest reads regular files only"


def sniff_binary(block: bytes) -> Optional[str]:
    r"""Why ``block`` (a file's first bytes) is binary, or None for text.

    >>> sniff_binary(b"plain text\n") is None
    True
    >>> sniff_binary("na\x00ive caf\u00e9 au lait, one stray NUL\n".encode()) is None
    True
    >>> sniff_binary(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    'binary: 5 of the first 16 bytes are NUL, control or invalid UTF-8 bytes (first NUL at byte 8)'
    """
    if not block:
        return None
    text = block.decode("utf-8", errors="replace")
    # A multibyte character cut by the end of the block is not an error; ``replace`` turns each invalid
    # byte (or maximal invalid prefix) into one U+FFFD, so count those against the valid decoding.
    invalid = text.count("\ufffd") - block.count("\ufffd".encode("utf-8"))
    cut = len(block) - len(block.rstrip(bytes(range(0x80, 0x100))))
    if cut and cut < 4:
        tail = block[-cut:]
        try:
            tail.decode("utf-8")
        except UnicodeDecodeError as e:
            if e.reason == "unexpected end of data":
                invalid -= 1
    controls = sum(1 for b in block if b < 0x20 and b not in _TEXT_CONTROLS)
    odd = max(0, invalid) + controls
    if odd <= BINARY_ODD_SHARE * len(block):
        return None
    nul = block.find(b"\x00")
    where = f" (first NUL at byte {nul})" if nul >= 0 else ""
    return f"binary: {odd} of the first {len(block)} bytes are NUL, control or invalid UTF-8 bytes{where}"


def split_text(text: str, max_bytes: int) -> list[str]:
    r"""``text`` cut into segments of at most ``max_bytes`` UTF-8 bytes, each at the last newline or space
    in its second half if there is one, else at a character boundary; joined, they give ``text`` back.

    >>> split_text("aaaa bbbb cccc", 10)
    ['aaaa bbbb ', 'cccc']
    >>> split_text("\u00e9\u00e9\u00e9", 4)
    ['éé', 'é']
    """
    data = text.encode("utf-8")
    if len(data) <= max_bytes:
        return [text]
    pieces, start = [], 0
    while len(data) - start > max_bytes:
        cut = _cut_point(data, start, start + max_bytes)
        pieces.append(data[start:cut].decode("utf-8"))
        start = cut
    pieces.append(data[start:].decode("utf-8"))
    return pieces


def _cut_point(data: bytes, start: int, end: int) -> int:
    """Where to end a segment ``data[start:end]``: after its last newline/space in the second half,
    else at the last UTF-8 character boundary (never inside a multibyte character)."""
    half = start + (end - start) // 2
    space = max(data.rfind(b"\n", half, end), data.rfind(b" ", half, end))
    if space >= 0:
        return space + 1
    cut = _char_boundary(data, end)
    return cut if cut > start else end


def _char_boundary(data: bytes, end: int) -> int:
    """``end``, or the start of the UTF-8 character that ``end`` would cut (whether or not the bytes
    after ``end`` are known): ``_char_boundary("a\u00e9".encode(), 2) == 1``."""
    for back in range(1, min(4, end) + 1):
        byte = data[end - back]
        if byte & 0xC0 == 0x80:
            continue  # a continuation byte: its lead is further back
        need = 4 if byte >= 0xF0 else 3 if byte >= 0xE0 else 2 if byte >= 0xC0 else 1
        return end - back if back < need else end
    return end


def resolve_inputs(specs: list[InputSpec], base: Optional[Path] = None) -> list[InputFile]:
    """Expand files, directories (recursively, sorted) and globs; a file named twice is read once.

    Relative paths are tried against the working directory, then ``base`` (the project root, where
    the bundled ``data/`` lives). A path that matches nothing is an error: a typo must not silently
    produce a smaller corpus. Directories and globs list everything that is not a directory, named
    pipes and sockets included: ingest refuses or skips those by name instead of dropping them unseen.
    """
    files: dict[Path, InputFile] = {}
    for spec in specs:
        matches = _expand(spec.path, base)
        if not matches:
            raise InputError(f"input not found: {spec.path!r} (no such file, directory or glob match)")
        for path, name in matches:
            files.setdefault(path, InputFile(path=path, split=spec.split, name=name))
    return list(files.values())


def _expand(pattern: str, base: Optional[Path]) -> list[tuple[Path, str]]:
    """(absolute path, name) of each file ``pattern`` matches; names are relative when ``pattern`` is."""
    candidates = [(Path(pattern), None)]
    if base is not None and not Path(pattern).is_absolute():
        candidates.append((base / pattern, base))
    for candidate, root in candidates:
        if glob.has_magic(str(candidate)):
            hits = sorted(Path(p) for p in glob.glob(str(candidate), recursive=True))
            hits = [h for h in hits if not h.is_dir()]
        elif candidate.is_dir():
            # Everything but directories: a FIFO or socket in a folder is reported, not silently dropped.
            hits = sorted(p for p in candidate.rglob("*") if not p.is_dir() and not p.name.startswith("."))
        elif candidate.exists() or candidate.is_symlink():
            hits = [candidate]
        else:
            continue
        if hits:
            return [(h.resolve() if h.exists() else h.absolute(),
                     (h.relative_to(root) if root is not None else h).as_posix()) for h in hits]
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


def _binary_lines(path: Path, max_bytes: int = 0) -> Iterator[tuple[int, int, bytes, bool]]:
    """(line number, byte offset, line piece without its ``\\n``, whether the piece ends its line) for a
    plain or gzip text file.

    With ``max_bytes`` > 0 no piece is longer than that: a longer line comes in several pieces, cut
    after a space in the piece's second half if there is one, else never inside a UTF-8 character (the
    bytes after the cut are carried into the next piece), so memory stays bounded by ``max_bytes``
    whatever the line length. With 0, every line comes whole.
    """
    try:
        with _open_binary(path) as f:
            offset, lineno, carry = 0, 1, b""
            while True:
                raw = carry + (f.readline(max_bytes - len(carry)) if max_bytes else f.readline())
                carry = b""
                if not raw:
                    return
                if raw.endswith(b"\n"):
                    yield lineno, offset, raw[:-1], True
                elif max_bytes and len(raw) >= max_bytes:
                    cut = _cut_point(raw, 0, len(raw))
                    raw, carry = raw[:cut], raw[cut:]
                    yield lineno, offset, raw, False
                    offset += len(raw)
                    continue
                else:
                    yield lineno, offset, raw, True  # the last line, without a newline
                offset += len(raw)
                lineno += 1
    except (EOFError, gzip.BadGzipFile, zlib.error) as e:
        raise SkipFile(f"{path}: truncated or corrupt gzip stream ({e})") from None
    except OSError as e:
        raise SkipFile(f"{path}: cannot read ({e.strerror or e})") from None


def read_head(path: Path, size: int = SNIFF_BYTES) -> bytes:
    """The first ``size`` bytes of a plain or gzip file (decompressed)."""
    try:
        with _open_binary(path) as f:
            return f.read(size)
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


def read_text(path: Path, unit: str, policy: str, repairs: Repairs, max_bytes: int = 0) -> Iterator[RawDoc]:
    """Plain text cut into documents by ``unit``; whitespace-only documents are yielded too, so the
    caller can count them (nothing disappears without a count).

    With ``max_bytes`` > 0 a document that would grow past it is yielded in segments of at most about
    ``max_bytes`` UTF-8 bytes (at line boundaries, or inside a longer line, see ``_binary_lines``), each
    a document of its own with the source of the line it starts at; ``repairs.long_documents_split``
    counts the documents so cut.
    """
    lines: list[str] = []  # of the document being read; the last one may still be open (a long line)
    size = start = 0
    open_line = was_cut = False

    def emit() -> RawDoc:
        text = "\n".join(lines)
        return RawDoc(text.strip("\n") if unit == "file" else text, f"{path}:{start}")

    for lineno, offset, raw, whole in _binary_lines(path, max_bytes):
        text = (decode_line if whole else decode_utf8)(raw, policy, f"{path}:{lineno}", offset, repairs)
        if unit == "paragraph" and whole and not open_line and not text.strip():
            if lines:  # a blank line ends the paragraph
                yield emit()
                lines, size, was_cut = [], 0, False
            continue
        if max_bytes and lines and size + len(raw) + 1 > max_bytes:
            yield emit()  # one segment of a document longer than max_bytes
            repairs.long_documents_split += not was_cut
            lines, size, open_line, was_cut = [], 0, False, True
        if open_line:
            lines[-1] += text
        else:
            if not lines:
                start = lineno
            lines.append(text)
        size += len(raw) + 1
        open_line = not whole
        if unit == "line" and whole:
            yield emit()
            lines, size, was_cut = [], 0, False
    if lines:
        yield emit()


def _segments(doc: RawDoc, max_bytes: int, repairs: Repairs) -> Iterator[RawDoc]:
    """``doc`` itself, or its segments of at most ``max_bytes`` (``split_text``), counted as one split."""
    if not max_bytes or len(doc.text) * 4 <= max_bytes or len(doc.text.encode("utf-8")) <= max_bytes:
        yield doc
        return
    repairs.long_documents_split += 1
    for segment in split_text(doc.text, max_bytes):
        yield RawDoc(segment, doc.source)


# A JSONL line holds its text JSON-escaped (quotes, backslashes, \\uXXXX escapes grow it): the line may be
# this many times ``max_bytes`` before the record is refused; its text is then cut into segments.
JSONL_LINE_FACTOR = 4


def read_jsonl(path: Path, field: str, policy: str, repairs: Repairs,
               max_bytes: int = 0) -> Iterator[RawDoc | SkipRecord]:
    """One document per JSON object; a bad line is yielded as a SkipRecord for the caller's policy.

    A BOM before the first record is dropped and counted (``repairs.bom_removed``), as for plain text.
    With ``max_bytes`` > 0 a line longer than ``JSONL_LINE_FACTOR * max_bytes`` is a bad record (read
    past in pieces, never held whole), and a record's text longer than ``max_bytes`` is cut into segments.
    """
    limit = JSONL_LINE_FACTOR * max_bytes
    too_long = None
    for lineno, offset, raw, whole in _binary_lines(path, limit):
        where = f"{path}:{lineno}"
        if too_long is not None or not whole:
            if too_long is None:
                too_long = SkipRecord(f"{where}: record longer than {limit} bytes (JSONL lines may hold "
                                      f"{JSONL_LINE_FACTOR} x ingest.max_document_bytes); raise "
                                      "ingest.max_document_bytes or split the record")
            if whole:
                yield too_long
                too_long = None
            continue
        if lineno == 1 and raw.startswith(b"\xef\xbb\xbf"):
            raw = raw[3:]
            repairs.bom_removed += 1
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
        yield from _segments(RawDoc(value, where), max_bytes, repairs)


def read_parquet(path: Path, column: str, repairs: Optional[Repairs] = None,
                 max_bytes: int = 0) -> Iterator[RawDoc | SkipRecord]:
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
    repairs = repairs if repairs is not None else Repairs()
    row = 0
    try:
        for batch in pf.iter_batches(columns=[column], batch_size=8192):
            for value in batch.column(0).to_pylist():
                if value is None:
                    yield SkipRecord(f"{path}#{row}: null {column!r}")
                else:
                    yield from _segments(RawDoc(value, f"{path}#{row}"), max_bytes, repairs)
                row += 1
    except (pa.ArrowException, OSError) as e:
        raise SkipFile(f"{path}: corrupt Parquet data after row {row} ({e})") from None


def read_file(path: Path, cfg, repairs: Repairs, source: Optional[str] = None) -> Iterator[RawDoc | SkipRecord]:
    """The documents of one input file under ``cfg`` (an ``IngestConfig``).

    Raises ``BinaryFile`` (before reading any document) when a text or JSONL file's first block is
    binary (``sniff_binary``). ``source`` replaces the path in each document's source (the path
    relative to its input, see ``InputFile.name``).
    """
    kind = file_format(path)
    if kind != "parquet":
        reason = sniff_binary(read_head(path))
        if reason is not None:
            raise BinaryFile(f"{path}: {reason}")
    if kind == "jsonl":
        docs = read_jsonl(path, cfg.text_field, cfg.encoding_errors, repairs, cfg.max_document_bytes)
    elif kind == "parquet":
        docs = read_parquet(path, cfg.text_column, repairs, cfg.max_document_bytes)
    else:
        docs = read_text(path, cfg.unit, cfg.encoding_errors, repairs, cfg.max_document_bytes)
    if source is None:
        return docs
    return _renamed(docs, str(path), source)


def _renamed(docs: Iterator[RawDoc | SkipRecord], old: str, new: str) -> Iterator[RawDoc | SkipRecord]:
    for doc in docs:
        if isinstance(doc, RawDoc):
            yield RawDoc(doc.text, new + doc.source[len(old):]) if doc.source.startswith(old) else doc
        else:
            yield SkipRecord(renamed_message(str(doc), old, new))


def renamed_message(message: str, old: str, new: str) -> str:
    """``message`` with its leading path ``old`` replaced by ``new`` (reports name inputs as spelled)."""
    return new + message[len(old):] if message.startswith(old) else message
