"""The scale corpus of issue 15: 10 MB, 100 MB and 1 GB slices of real text from Debian's ``linux-source``.

In: the kernel source tarball that ``apt-get install linux-source`` puts in /usr/src (6.1: a 138 MB
.tar.xz, 1.32 GB and 78,579 files unpacked). Out, under ``--data-dir`` (default /work/scale-data, outside
the repository):

    src/linux-source-6.1/          the unpacked tree (left in place; reused when present)
    <slice>/docs/part-NNNNN.jsonl  (a) ingest input: one JSON object per line, {"text": ..., "id": ...};
                                   point ``ingest.inputs`` at the ``docs`` folder
    <slice>/words.txt              (b) lmplz / ``arpipe ngram estimate`` input: one source line per line,
                                   words split on whitespace and joined by one space, blank lines dropped
    <slice>/manifest.json          sizes, document / line / word counts, sha256 of every file
    heldout/                       the same two forms for a held-out 1% of the documents (about 10 MB),
                                   never in any slice: the perplexity check of lmplz vs arpipe

with ``<slice>`` one of ``10mb``, ``100mb``, ``1gb`` (decimal: 10**7, 10**8, 10**9 bytes of UTF-8 text
for (a), of words.txt for (b); each slice stops at the document that reaches its size).

    apt-get install linux-source
    .venv/bin/python benchmarks/make_scale_corpus.py [--data-dir /work/scale-data] [--slices 10mb,100mb,1gb]

How the documents are made, so that the slices are real text, representative, and nested:

- Files: every regular file of the tree that is valid UTF-8 and contains no NUL byte (a few hundred
  binary or Latin-1 files are skipped and counted). The AMD GPU register headers (395 MB of generated
  ``#define``s) are kept: they are part of the kernel, and without them the tree holds under 1 GB.
- Documents: a file, or for a file over 64 KiB, consecutive pieces of it, each cut at the last blank line
  before 64 KiB (else the last newline, else a character boundary). Bounded documents keep the hash split
  of ingest even: no single 24 MB header decides how big the test split is.
- Order: documents sorted by BLAKE2b(path, piece number), a fixed shuffle of the whole tree, so every
  slice is a uniform sample of it and each slice is a prefix of the next bigger one (a superset, same
  order). Exact duplicate documents (identical headers across architectures) are written once, at their
  first place in that order, since ingest would drop them anyway. Documents whose hash is 0 mod 100 are
  the held-out set.
- Words: lmplz reserves ``<s> </s> <unk>``; the rare literal occurrences in the source become ``__s__
  __/s__ __unk__``, as in benchmarks/ngram_estimation.py.

JSONL part files hold up to 128 MB of text each (the 1 GB slice is 8 parts), written once per slice
folder (the slices do not share files, so each folder is a self-contained ``ingest.inputs``).
A rerun rebuilds the slices from the unpacked tree; the output is byte-identical for the same tarball.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

SLICES = {"10mb": 10**7, "100mb": 10**8, "1gb": 10**9}
PIECE_BYTES = 64 * 1024
PART_BYTES = 128 * 10**6
HELDOUT_MODULUS = 100
RESERVED = {"<s>": "__s__", "</s>": "__/s__", "<unk>": "__unk__"}


@dataclass(frozen=True)
class Piece:
    """A document: bytes [start, end) of one file of the tree; ``key`` orders the stream."""

    key: int
    path: str
    index: int
    start: int
    end: int
    digest: bytes


def unpack(data_dir: Path, tarball: Path | None) -> Path:
    """The unpacked tree under data_dir/src, unpacking the newest /usr/src tarball on first use."""
    src = data_dir / "src"
    trees = sorted(src.glob("linux-source-*")) if src.exists() else []
    if trees:
        return trees[-1]
    if tarball is None:
        found = sorted(Path("/usr/src").glob("linux-source-*.tar.xz"))
        if not found:
            sys.exit("error: no /usr/src/linux-source-*.tar.xz; run `apt-get install linux-source` "
                     "or pass --tarball")
        tarball = found[-1]
    src.mkdir(parents=True, exist_ok=True)
    print(f"unpacking {tarball} -> {src}", flush=True)
    subprocess.run(["tar", "-xJf", str(tarball), "-C", str(src)], check=True)
    return sorted(src.glob("linux-source-*"))[-1]


def cut_points(data: bytes, limit: int = PIECE_BYTES) -> list[int]:
    """End offsets of the pieces of ``data``, each at most ``limit`` bytes, cut at a blank line if any.

    >>> cut_points(b"ab\\n\\ncd\\n", limit=5)
    [4, 7]
    """
    ends, pos = [], 0
    while len(data) - pos > limit:
        window = data[pos:pos + limit]
        cut = window.rfind(b"\n\n")
        if cut > 0:
            cut += 2
        else:
            cut = window.rfind(b"\n") + 1
        if cut <= 0:
            cut = limit
            while cut > 1 and (window[cut] & 0xC0) == 0x80:  # do not split a UTF-8 sequence
                cut -= 1
        pos += cut
        ends.append(pos)
    ends.append(len(data))
    return ends


def scan(tree: Path) -> tuple[list[Piece], dict[str, int]]:
    """Every document of the tree, in stream order (sorted by key), and counts of what was skipped."""
    pieces, skipped = [], {"not_utf8": 0, "nul_byte": 0, "empty": 0, "files": 0}
    for path in sorted(p for p in tree.rglob("*") if p.is_file() and not p.is_symlink()):
        data = path.read_bytes()
        rel = path.relative_to(tree.parent).as_posix()
        skipped["files"] += 1
        if not data.strip():
            skipped["empty"] += 1
            continue
        if b"\0" in data:
            skipped["nul_byte"] += 1
            continue
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            skipped["not_utf8"] += 1
            continue
        start = 0
        for index, end in enumerate(cut_points(data)):
            name = f"{rel}#{index}".encode("utf-8")
            key = int.from_bytes(hashlib.blake2b(name, digest_size=8).digest(), "big")
            digest = hashlib.blake2b(data[start:end], digest_size=16).digest()
            pieces.append(Piece(key, rel, index, start, end, digest))
            start = end
    pieces.sort(key=lambda p: p.key)
    return pieces, skipped


def documents(tree: Path, pieces: list[Piece]) -> Iterator[tuple[Piece, str]]:
    """(piece, text) in stream order, each distinct text once."""
    seen: set[bytes] = set()
    root = tree.parent
    for piece in pieces:
        if piece.digest in seen:
            continue
        seen.add(piece.digest)
        with open(root / piece.path, "rb") as f:
            f.seek(piece.start)
            text = f.read(piece.end - piece.start).decode("utf-8")
        if text.strip():
            yield piece, text


def word_lines(text: str) -> list[str]:
    """One line per non-blank source line, words joined by single spaces, lmplz's reserved words renamed.

    >>> word_lines("int  main(void)\\n\\n\\t{ <s> }\\n")
    ['int main(void)', '{ __s__ }']
    """
    out = []
    for line in text.splitlines():
        words = line.split()
        if words:
            out.append(" ".join(RESERVED.get(w, w) for w in words))
    return out


class SliceWriter:
    """One slice folder: JSONL parts for ingest and one words file, each filled up to its byte budget."""

    def __init__(self, folder: Path, budget: int):
        self.folder, self.budget = folder, budget
        (folder / "docs").mkdir(parents=True, exist_ok=True)
        for old in (folder / "docs").glob("part-*.jsonl"):
            old.unlink()
        self.parts: list[Path] = []
        self.part = None
        self.part_bytes = 0
        self.doc_bytes = self.docs = 0
        self.words = open(folder / "words.txt", "w", encoding="utf-8", newline="\n")
        self.word_bytes = self.lines = self.word_count = 0

    @property
    def full(self) -> bool:
        return self.doc_bytes >= self.budget and self.word_bytes >= self.budget

    def add(self, piece: Piece, text: str) -> None:
        size = len(text.encode("utf-8"))
        if self.doc_bytes < self.budget:
            if self.part is None or self.part_bytes >= PART_BYTES:
                self._next_part()
            record = {"text": text, "id": f"{piece.path}#{piece.index}"}
            self.part.write(json.dumps(record, ensure_ascii=False) + "\n")
            self.part_bytes += size
            self.doc_bytes += size
            self.docs += 1
        if self.word_bytes < self.budget:
            for line in word_lines(text):
                self.words.write(line + "\n")
                self.word_bytes += len(line.encode("utf-8")) + 1
                self.lines += 1
                self.word_count += line.count(" ") + 1

    def _next_part(self) -> None:
        if self.part is not None:
            self.part.close()
        path = self.folder / "docs" / f"part-{len(self.parts):05d}.jsonl"
        self.parts.append(path)
        self.part = open(path, "w", encoding="utf-8", newline="\n")
        self.part_bytes = 0

    def close(self, source: dict) -> dict:
        if self.part is not None:
            self.part.close()
        self.words.close()
        files = [*self.parts, self.folder / "words.txt"]
        manifest = {
            "source": source,
            "budget_bytes": self.budget,
            "docs": {"documents": self.docs, "text_bytes": self.doc_bytes},
            "words": {"lines": self.lines, "words": self.word_count, "bytes": self.word_bytes},
            "files": {f.relative_to(self.folder).as_posix(): {"bytes": f.stat().st_size, "sha256": _sha256(f)}
                      for f in files},
        }
        (self.folder / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
        return manifest


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def build(data_dir: Path, names: list[str], tarball: Path | None) -> None:
    t0 = time.perf_counter()
    tree = unpack(data_dir, tarball)
    pieces, skipped = scan(tree)
    print(f"{tree}: {skipped['files']} files, {len(pieces)} documents; skipped {skipped}", flush=True)
    source = {"tree": tree.name, "skipped_files": skipped, "piece_bytes": PIECE_BYTES,
              "order": "blake2b-64(path#piece) ascending", "heldout": f"key % {HELDOUT_MODULUS} == 0"}
    writers = {name: SliceWriter(data_dir / name, SLICES[name]) for name in names}
    heldout = SliceWriter(data_dir / "heldout", 10**12)
    for piece, text in documents(tree, pieces):
        if piece.key % HELDOUT_MODULUS == 0:
            heldout.add(piece, text)
            continue
        open_writers = [w for w in writers.values() if not w.full]
        for w in open_writers:
            w.add(piece, text)
    for name, w in [*writers.items(), ("heldout", heldout)]:
        m = w.close(source)
        short = "" if w.full or name == "heldout" else "  (tree exhausted before the budget)"
        print(f"{data_dir / name}: {m['docs']['documents']} documents, {m['docs']['text_bytes'] / 1e6:.1f} MB "
              f"text; words.txt {m['words']['lines']} lines, {m['words']['words']} words, "
              f"{m['words']['bytes'] / 1e6:.1f} MB{short}", flush=True)
    print(f"done in {time.perf_counter() - t0:.0f} s")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", type=Path, default=Path("/work/scale-data"))
    ap.add_argument("--slices", default=",".join(SLICES), help=f"comma-separated subset of {','.join(SLICES)}")
    ap.add_argument("--tarball", type=Path, default=None, help="default: newest /usr/src/linux-source-*.tar.xz")
    args = ap.parse_args(argv)
    names = [s for s in args.slices.split(",") if s]
    unknown = [s for s in names if s not in SLICES]
    if unknown:
        ap.error(f"unknown slice {unknown[0]!r}; choose from {', '.join(SLICES)}")
    build(args.data_dir, names, args.tarball)


if __name__ == "__main__":
    main()
