"""Ingest: formats, units, normalization, dedup, split, and every bad input the issue lists.

Each bad input must end as a one-line InputError or a counted repair in the report; documents are
never dropped without a count: raw = written + duplicates + empty (+ skipped records).
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from arcore.errors import InputError
from arcore.ingest import DOCUMENTS_FILE, IngestConfig, build_ingest
from arcore.ingest.split import hash_split


def run(tmp_path: Path, inputs, **kw):
    out = tmp_path / "out"
    out.mkdir(exist_ok=True)
    cfg = IngestConfig(inputs=[str(i) if isinstance(i, Path) else i for i in inputs],
                       valid_fraction=kw.pop("valid_fraction", 0.0), test_fraction=kw.pop("test_fraction", 0.0), **kw)
    result = build_ingest(cfg, out)
    table = pq.read_table(out / DOCUMENTS_FILE)
    report = json.loads((out / "report.json").read_text())
    return table.to_pylist(), report, result


def accounted(report) -> bool:
    return report["raw_documents"] == (
        sum(report["documents"].values()) + report["duplicates_dropped"] + report["empty_documents"]
    )


def test_units_line_paragraph_file(tmp_path):
    f = tmp_path / "a.txt"
    f.write_text("one\ntwo\n\nthree\nfour\n\n\nfive\n")
    docs, report, _ = run(tmp_path, [f], unit="line")
    assert [d["text"] for d in docs] == ["one", "two", "three", "four", "five"]
    assert report["empty_documents"] == 3 and accounted(report)
    docs, _, _ = run(tmp_path, [f], unit="paragraph")
    assert [d["text"] for d in docs] == ["one\ntwo", "three\nfour", "five"]
    assert docs[1]["source"].endswith("a.txt:4")
    docs, _, _ = run(tmp_path, [f], unit="file")
    assert [d["text"] for d in docs] == ["one\ntwo\n\nthree\nfour\n\n\nfive"]


def test_formats_directory_glob_gz_jsonl_parquet(tmp_path):
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "a.txt").write_text("alpha\n")
    with gzip.open(src / "sub" / "b.txt.gz", "wt") as g:
        g.write("beta\n")
    (src / "c.jsonl").write_text(json.dumps({"body": "gamma"}) + "\n\n" + json.dumps({"body": "delta"}) + "\n")
    with gzip.open(src / "d.jsonl.gz", "wt") as g:
        g.write(json.dumps({"body": "epsilon"}) + "\n")
    pq.write_table(pa.table({"content": ["zeta", "eta"]}), src / "e.parquet")
    docs, report, result = run(tmp_path, [src], unit="line", text_field="body", text_column="content")
    assert sorted(d["text"] for d in docs) == ["alpha", "beta", "delta", "epsilon", "eta", "gamma", "zeta"]
    assert report["files_read"] == 5 and accounted(report)
    assert result.records["documents"] == 7
    docs, _, _ = run(tmp_path, [str(src / "*.txt")], unit="line")
    assert [d["text"] for d in docs] == ["alpha"]


def test_normalization_repairs_are_counted(tmp_path):
    f = tmp_path / "a.txt"
    f.write_bytes("\ufeffcafe\u0301 au lait\r\nna\x00ive\r\n".encode("utf-8"))
    docs, report, _ = run(tmp_path, [f], unit="line")
    assert [d["text"] for d in docs] == ["caf\u00e9 au lait", "naive"]
    assert report["repairs"] == {"bom_removed": 1, "nul_removed": 1, "newlines_normalized": 2,
                                 "nfc_changed": 1, "invalid_utf8_replaced": 0, "long_documents_split": 0}


def test_exact_duplicates_dropped_after_normalization(tmp_path):
    f = tmp_path / "a.txt"
    f.write_text("same\nother\nsame\ncafe\u0301\ncaf\u00e9\n")
    docs, report, _ = run(tmp_path, [f], unit="line")
    assert [d["text"] for d in docs] == ["same", "other", "caf\u00e9"]
    assert report["duplicates_dropped"] == 2 and accounted(report)


def test_hash_split_is_deterministic_and_follows_fractions(tmp_path):
    f = tmp_path / "a.txt"
    f.write_text("".join(f"line {i}\n" for i in range(4000)))
    docs, report, _ = run(tmp_path, [f], unit="line", valid_fraction=0.1, test_fraction=0.2)
    n = report["documents"]
    assert abs(n["valid"] / 4000 - 0.1) < 0.02 and abs(n["test"] / 4000 - 0.2) < 0.025
    again, _, _ = run(tmp_path, [f], unit="line", valid_fraction=0.1, test_fraction=0.2)
    assert [d["split"] for d in docs] == [d["split"] for d in again]
    # a document's split does not depend on the other documents
    g = tmp_path / "b.txt"
    g.write_text("line 7\n")
    alone, _, _ = run(tmp_path, [g], unit="line", valid_fraction=0.1, test_fraction=0.2) if docs[7]["split"] == "train" else (None, None, None)
    if alone is not None:
        assert alone[0]["split"] == "train"
    assert hash_split(b"x", 0.0, 0.0, "s") == "train"


def test_explicit_split_per_input(tmp_path):
    tr, va = tmp_path / "train.txt", tmp_path / "valid.txt"
    tr.write_text("a\nb\n")
    va.write_text("c\n")
    docs, report, _ = run(tmp_path, [tr, {"path": str(va), "split": "valid"}], unit="line",
                          valid_fraction=0.0, test_fraction=0.0)
    assert {d["text"]: d["split"] for d in docs} == {"a": "train", "b": "train", "c": "valid"}


def test_invalid_utf8_strict_names_file_and_offset(tmp_path):
    f = tmp_path / "bad.txt"
    f.write_bytes(b"good line\nbad \xff here\n")
    with pytest.raises(InputError, match=r"bad.txt:2: invalid UTF-8 at byte offset 14 \(byte 0xff\)"):
        run(tmp_path, [f], unit="line")


def test_invalid_utf8_replace_counts(tmp_path):
    f = tmp_path / "bad.txt"
    f.write_bytes(b"bad \xff\xfe here \xef\xbf\xbd\n")
    docs, report, _ = run(tmp_path, [f], unit="line", encoding_errors="replace")
    assert docs[0]["text"] == "bad \ufffd\ufffd here \ufffd"
    assert report["repairs"]["invalid_utf8_replaced"] == 2


def test_empty_files_are_skipped_and_counted(tmp_path):
    (tmp_path / "empty.txt").write_bytes(b"")
    (tmp_path / "blank.txt").write_text("\n\n  \n")
    (tmp_path / "ok.txt").write_text("text\n")
    docs, report, _ = run(tmp_path, [tmp_path / "empty.txt", tmp_path / "blank.txt", tmp_path / "ok.txt"], unit="line")
    assert len(docs) == 1
    reasons = {Path(s["path"]).name: s["reason"] for s in report["files_skipped"]}
    assert reasons["empty.txt"] == "empty file"
    assert report["empty_documents"] == 3


def test_a_60mb_single_line_is_cut_into_bounded_segments(tmp_path):
    """Issue 17: one 60 MB line among normal files got the shards stage killed at 10 GB. Ingest now cuts
    it into segments of at most max_document_bytes (at spaces), reading it in bounded pieces, and counts it."""
    f = tmp_path / "long.txt"
    line = "".join(f"w{i:08d} " for i in range(6_000_000))  # 60 MB, one line (distinct words: no duplicates)
    f.write_text("short before\n" + line + "\nshort after\n")
    # in a child, so its peak RSS is this ingest's alone: reading the line whole peaked at 649 MB, in
    # 1 MiB pieces at about 300 MB (most of it the writer's 16 MiB row groups)
    script = (
        "import sys\n"
        "from pathlib import Path\n"
        "from arcore.ingest import IngestConfig, build_ingest\n"
        "out = Path(sys.argv[1]); out.mkdir()\n"
        "build_ingest(IngestConfig(inputs=[sys.argv[2]], unit='line', valid_fraction=0, test_fraction=0), out)\n"
        # VmHWM, not ru_maxrss: Linux carries ru_maxrss over exec from the forked copy of this process
        "print(next(int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmHWM')) // 1024)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    out = tmp_path / "out"
    p = subprocess.run([sys.executable, "-c", script, str(out), str(f)], capture_output=True, text=True, env=env,
                       timeout=600)
    assert p.returncode == 0, p.stderr
    assert int(p.stdout) < 450  # MB
    docs = pq.read_table(out / DOCUMENTS_FILE).to_pylist()
    report = json.loads((out / "report.json").read_text())
    sizes = [len(d["text"].encode()) for d in docs]
    assert docs[0]["text"] == "short before" and docs[-1]["text"] == "short after"
    assert max(sizes) <= (1 << 20) and len(docs) == 2 + 58  # 60e6 / 2^20 -> 58 segments, each cut at a space
    assert all(d["text"].endswith(" ") for d in docs[1:-1])
    assert "".join(d["text"] for d in docs[1:-1]) == line
    assert report["repairs"]["long_documents_split"] == 1
    assert {d["source"] for d in docs[1:-1]} == {f"{f}:2"}


def test_long_documents_of_every_unit_and_format_are_segmented(tmp_path):
    limit = 4096
    para = "\n".join(f"line {i} of one long paragraph" for i in range(2000))  # ~60 KB, no blank line
    (tmp_path / "p.txt").write_text(para + "\n\nshort\n")
    docs, report, _ = run(tmp_path, [tmp_path / "p.txt"], unit="paragraph", max_document_bytes=limit)
    assert max(len(d["text"].encode()) for d in docs) <= limit and docs[-1]["text"] == "short"
    assert "\n".join(d["text"] for d in docs[:-1]) == para  # cut at line boundaries, nothing lost
    assert report["repairs"]["long_documents_split"] == 1
    docs, report, _ = run(tmp_path, [tmp_path / "p.txt"], unit="file", max_document_bytes=limit)
    assert max(len(d["text"].encode()) for d in docs) <= limit and report["repairs"]["long_documents_split"] == 1
    # a multibyte character is never cut, whatever the cut position
    rng = __import__("random").Random(0)
    text = "".join(rng.choice("\u00e9\u4e2d\U0001f600a") for _ in range(10000))  # 1- to 4-byte characters
    (tmp_path / "u.txt").write_text(text + "\n")
    docs, _, _ = run(tmp_path, [tmp_path / "u.txt"], unit="line", max_document_bytes=limit)
    assert "".join(d["text"] for d in docs) == text and max(len(d["text"].encode()) for d in docs) <= limit
    # JSONL: a record's text is cut; a line beyond 4 x the limit is a bad record naming the file and limit
    words = "".join(f"word{i} " for i in range(1400))  # distinct segments: duplicates would be dropped
    (tmp_path / "a.jsonl").write_text(json.dumps({"text": words}) + "\n"
                                      + json.dumps({"text": "x" * (5 * limit)}) + "\n" + '{"text": "ok"}\n')
    with pytest.raises(InputError, match=r"a.jsonl:2: record longer than 16384 bytes .*ingest.max_document_bytes"):
        run(tmp_path, [tmp_path / "a.jsonl"], max_document_bytes=limit)
    docs, report, _ = run(tmp_path, [tmp_path / "a.jsonl"], max_document_bytes=limit, on_error="skip")
    assert "".join(d["text"] for d in docs[:-1]) == words and docs[-1]["text"] == "ok"
    assert report["records_skipped"] == 1 and report["repairs"]["long_documents_split"] == 1
    # Parquet rows too
    pq.write_table(pa.table({"text": [words, "z"]}), tmp_path / "a.parquet")
    docs, report, _ = run(tmp_path, [tmp_path / "a.parquet"], max_document_bytes=limit)
    assert "".join(d["text"] for d in docs[:-1]) == words and report["repairs"]["long_documents_split"] == 1


def test_jsonl_with_a_bom_is_a_counted_repair_like_text(tmp_path):
    (tmp_path / "a.jsonl").write_bytes(b"\xef\xbb\xbf" + b'{"text": "first"}\n{"text": "second"}\n')
    (tmp_path / "b.txt").write_bytes("\ufeffthird\n".encode())
    docs, report, _ = run(tmp_path, [tmp_path / "a.jsonl", tmp_path / "b.txt"], unit="line")
    assert [d["text"] for d in docs] == ["first", "second", "third"]
    assert report["repairs"]["bom_removed"] == 2


def test_truncated_gzip_fails_or_is_skipped(tmp_path):
    data = gzip.compress(b"".join(b"line %d\n" % i for i in range(20000)))
    bad = tmp_path / "cut.txt.gz"
    bad.write_bytes(data[: len(data) // 2])
    ok = tmp_path / "ok.txt"
    ok.write_text("fine\n")
    with pytest.raises(InputError, match=r"cut.txt.gz: truncated or corrupt gzip stream"):
        run(tmp_path, [bad, ok], unit="line")
    docs, report, _ = run(tmp_path, [bad, ok], unit="line", on_error="skip")
    assert [d["text"] for d in docs] == ["fine"]  # nothing from the half-read file
    assert "truncated" in report["files_skipped"][0]["reason"]


def test_missing_path_is_one_line_error(tmp_path):
    with pytest.raises(InputError, match=r"input not found: '.*nope.txt'"):
        run(tmp_path, [tmp_path / "nope.txt"])
    with pytest.raises(InputError, match=r"input not found"):
        run(tmp_path, [str(tmp_path / "*.none")])


@pytest.fixture
def world_dir():
    """A directory any user can enter (pytest's tmp_path is private to its owner)."""
    import shutil
    import tempfile

    d = Path(tempfile.mkdtemp(prefix="arpipe-unreadable-"))
    os.chmod(d, 0o777)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def test_unreadable_file(world_dir):
    """The reading process drops to an unprivileged user when the tests run as root."""
    base = world_dir
    f = base / "secret.txt"
    f.write_text("hidden\n")
    os.chmod(f, 0o000)
    ok = base / "ok.txt"
    ok.write_text("visible\n")
    os.chmod(ok, 0o644)
    script = (
        "import sys, json\n"
        "from pathlib import Path\n"
        "from arcore.ingest import IngestConfig, build_ingest\n"
        "from arcore.errors import InputError\n"
        "import os\n"
        "if os.geteuid() == 0:\n"
        "    os.setgid(65534); os.setuid(65534)  # drop root: root reads mode-000 files\n"
        f"out = Path({str(base)!r}) / ('out-' + sys.argv[1]); out.mkdir()\n"
        f"cfg = IngestConfig(inputs=[{str(f)!r}, {str(ok)!r}], unit='line', on_error=sys.argv[1], valid_fraction=0, test_fraction=0)\n"
        "try:\n"
        "    r = build_ingest(cfg, out); print(json.dumps(json.loads((out / 'report.json').read_text())['files_skipped']))\n"
        "except InputError as e:\n"
        "    print('InputError:', e)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    outs = {}
    for policy in ("fail", "skip"):
        p = subprocess.run([sys.executable, "-c", script, policy], capture_output=True, text=True,
                           env=env, cwd=base)
        assert p.returncode == 0, p.stderr
        outs[policy] = p.stdout.strip()
    assert outs["fail"].startswith("InputError:") and "secret.txt: cannot read" in outs["fail"]
    assert "Permission denied" in outs["fail"] and "on_error=skip" in outs["fail"]
    skipped = json.loads(outs["skip"])
    assert len(skipped) == 1 and "secret.txt: cannot read" in skipped[0]["reason"]


def test_bad_jsonl_lines(tmp_path):
    f = tmp_path / "a.jsonl"
    f.write_text('{"text": "ok"}\nnot json\n{"other": 1}\n{"text": 5}\n[1]\n')
    with pytest.raises(InputError, match=r"a.jsonl:2: not valid JSON"):
        run(tmp_path, [f])
    docs, report, _ = run(tmp_path, [f], on_error="skip")
    assert [d["text"] for d in docs] == ["ok"]
    assert report["records_skipped"] == 4
    ex = report["records_skipped_examples"]
    assert "a.jsonl:3: no field 'text'" in ex[1] and "field 'text' is int" in ex[2]


def test_parquet_missing_column_and_nulls(tmp_path):
    f = tmp_path / "a.parquet"
    pq.write_table(pa.table({"body": ["x", None, "y"]}), f)
    with pytest.raises(InputError, match=r"no column 'text' \(columns: body\); set ingest.text_column"):
        run(tmp_path, [f])
    docs, report, _ = run(tmp_path, [f], text_column="body", on_error="skip")
    assert [d["text"] for d in docs] == ["x", "y"] and report["records_skipped"] == 1


def test_no_documents_at_all(tmp_path):
    (tmp_path / "blank.txt").write_text("\n \n")
    with pytest.raises(InputError, match=r"inputs yield no documents \(1 file\(s\), 1 read, 2 empty"):
        run(tmp_path, [tmp_path / "blank.txt"], unit="line")


def test_empty_train_split_is_refused(tmp_path):
    f = tmp_path / "v.txt"
    f.write_text("a\n")
    with pytest.raises(InputError, match="the train split is empty"):
        run(tmp_path, [{"path": str(f), "split": "valid"}], unit="line")


def test_bundled_sample(tmp_path):
    cfg = IngestConfig()  # default input: data/tinyshakespeare/input.txt, found from any cwd
    out = tmp_path / "out"
    out.mkdir()
    result = build_ingest(cfg, out)
    assert result.records["documents"] > 7000
    assert result.metrics["documents_valid"] > 200 and result.metrics["documents_test"] > 200


# Streaming (issue 15): row groups written as documents are read, per-file transactions, digests only.


def row_groups(out: Path) -> int:
    return pq.ParquetFile(out / DOCUMENTS_FILE).num_row_groups


def test_small_row_groups_write_the_same_table_incrementally(tmp_path):
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_text("".join(f"line {i}\n" for i in range(300)))
    b.write_text("".join(f"other {i}\n" for i in range(200)))
    whole, report, _ = run(tmp_path, [a, b], unit="line", valid_fraction=0.1, test_fraction=0.1)
    assert row_groups(tmp_path / "out") == 1
    small, small_report, _ = run(tmp_path, [a, b], unit="line", valid_fraction=0.1, test_fraction=0.1,
                                 row_group_bytes=400)
    assert small == whole and small_report == report
    n = row_groups(tmp_path / "out")
    assert n >= 8  # ~4.3 kB of text in 400-byte row groups (staged ones, and the cut at each file's end)
    sizes = [pq.ParquetFile(tmp_path / "out" / DOCUMENTS_FILE).metadata.row_group(i).num_rows for i in range(n)]
    assert sum(sizes) == len(whole) and max(sizes) <= 60  # 400 bytes are at most 57 lines of 7+ bytes
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [DOCUMENTS_FILE, "report.json"]


def test_duplicates_dropped_exactly_across_row_groups_and_files(tmp_path):
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_text("".join(f"line {i % 50}\n" for i in range(200)))  # each line 4 times
    b.write_text("".join(f"line {i}\n" for i in range(25, 75)))  # 25..49 seen in a, 50..74 new
    docs, report, _ = run(tmp_path, [a, b], unit="line", row_group_bytes=16)
    assert [d["text"] for d in docs] == [f"line {i}" for i in range(75)]
    assert report["duplicates_dropped"] == 150 + 25 and accounted(report)
    assert row_groups(tmp_path / "out") > 10
    assert [d["source"].rsplit("/", 1)[1] for d in docs[48:52]] == ["a.txt:49", "a.txt:50", "b.txt:26", "b.txt:27"]


def test_a_file_failing_after_spilled_row_groups_contributes_nothing(tmp_path):
    """The truncated file's rows were already staged on disk and its digests seen: all of it is undone,
    so the same lines in a later file are kept, not dropped as duplicates of documents never written."""
    data = gzip.compress(b"".join(b"line %d\n" % i for i in range(20000)))
    bad = tmp_path / "cut.txt.gz"
    bad.write_bytes(data[: len(data) // 2])
    ok = tmp_path / "ok.txt"
    ok.write_text("line 0\nline 1\nfine\n")
    docs, report, _ = run(tmp_path, [bad, ok], unit="line", on_error="skip", row_group_bytes=1024)
    assert [d["text"] for d in docs] == ["line 0", "line 1", "fine"]
    assert report["raw_documents"] == 3 and report["duplicates_dropped"] == 0 and report["files_read"] == 1
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [DOCUMENTS_FILE, "report.json"]
    out = tmp_path / "fail"
    out.mkdir()
    cfg = IngestConfig(inputs=[str(ok), str(bad)], unit="line", row_group_bytes=1024)
    with pytest.raises(InputError, match="truncated"):
        build_ingest(cfg, out)
    assert list(out.iterdir()) == []  # neither documents.parquet nor its partial or staging file


def test_bad_record_before_a_corrupt_tail_reports_the_corruption(tmp_path):
    """Read whole or streamed, a file's read errors come before its bad records under on_error=fail."""
    lines = [b'{"text": "ok %d"}\n' % i for i in range(20000)]
    lines.insert(1, b"not json\n")
    data = gzip.compress(b"".join(lines))
    f = tmp_path / "a.jsonl.gz"
    f.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="truncated or corrupt gzip stream"):
        run(tmp_path, [f])
    g = tmp_path / "b.jsonl"
    g.write_bytes(b"".join(lines[:5]))
    with pytest.raises(InputError, match=r"b.jsonl:2: not valid JSON"):
        run(tmp_path, [g])


def test_skipped_record_examples_stay_capped_across_files(tmp_path):
    files = []
    for k in range(3):
        f = tmp_path / f"{k}.jsonl"
        f.write_text('{"text": "ok %d"}\n' % k + "bad\n" * 60)
        files.append(f)
    docs, report, _ = run(tmp_path, files, on_error="skip", row_group_bytes=1)
    assert [d["text"] for d in docs] == ["ok 0", "ok 1", "ok 2"]
    assert report["records_skipped"] == 180 and len(report["records_skipped_examples"]) == 100
    assert report["records_skipped_examples"][60].startswith(str(files[1]) + ":2:")


def test_row_group_bytes_is_validated():
    with pytest.raises(ValueError, match="row_group_bytes"):
        IngestConfig(row_group_bytes=0)


def _ingest_in_child(tmp_path: Path, inputs: list[str], on_error: str) -> dict:
    """build_ingest and inputs_digest in a child process: a reader that opened a FIFO would block forever,
    so the child is given a deadline far beyond the work (it is killed rather than hanging the suite)."""
    script = (
        "import json, sys\n"
        "from pathlib import Path\n"
        "from arcore.errors import InputError\n"
        "from arcore.ingest import IngestConfig, build_ingest, inputs_digest\n"
        "from arcore.io import DigestCache\n"
        "out = Path(sys.argv[1]); out.mkdir(exist_ok=True)\n"
        "cfg = IngestConfig(inputs=json.loads(sys.argv[2]), unit='line', on_error=sys.argv[3],\n"
        "                   valid_fraction=0, test_fraction=0)\n"
        "digest = inputs_digest(cfg, DigestCache(out / 'digests.json'))\n"
        "try:\n"
        "    build_ingest(cfg, out)\n"
        "    print(json.dumps({'digest': digest, 'report': json.loads((out / 'report.json').read_text())}))\n"
        "except InputError as e:\n"
        "    print(json.dumps({'digest': digest, 'error': str(e)}))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    out = tmp_path / f"out-{on_error}-{len(list(tmp_path.iterdir()))}"
    p = subprocess.run([sys.executable, "-c", script, str(out), json.dumps(inputs), on_error],
                       capture_output=True, text=True, env=env, timeout=120)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


def test_fifo_and_socket_among_inputs_are_refused_or_skipped_never_opened(tmp_path):
    """Issue 17: a named pipe in the input folder blocked ingest on open/read forever."""
    import socket

    src = tmp_path / "src"
    src.mkdir()
    (src / "a.txt").write_text("alpha\n")
    os.mkfifo(src / "pipe.txt")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(src / "sock"))
    try:
        failed = _ingest_in_child(tmp_path, [str(src)], "fail")
        assert "pipe.txt: not a regular file (a named pipe)" in failed["error"]
        assert "on_error=skip" in failed["error"] and "\n" not in failed["error"]
        skipped = _ingest_in_child(tmp_path, [str(src)], "skip")
        reasons = {Path(s["path"]).name: s["reason"] for s in skipped["report"]["files_skipped"]}
        assert "not a regular file (a named pipe)" in reasons["pipe.txt"]
        assert "not a regular file (a socket)" in reasons["sock"]
        assert skipped["report"]["documents"]["train"] == 1
        named = _ingest_in_child(tmp_path, [str(src / "pipe.txt"), str(src / "a.txt")], "fail")  # named directly
        assert "pipe.txt: not a regular file (a named pipe)" in named["error"]
    finally:
        sock.close()


def test_binary_files_in_a_folder_are_skipped_and_counted(tmp_path):
    """Issue 17: a PNG among text files stopped the run with "invalid UTF-8 at byte offset 0", even with
    on_error=skip. Binary files are skipped and counted under either policy; text files keep the strict
    policy for invalid UTF-8 after their first block, and a stray NUL stays a counted repair."""
    import zlib as _zlib

    src = tmp_path / "src"
    src.mkdir()
    png = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + _zlib.compress(os.urandom(4000))
    (src / "image.png").write_bytes(png)
    (src / "utf16.txt").write_text("hello world\n" * 50, encoding="utf-16")
    with gzip.open(src / "packed.txt.gz", "wb") as g:
        g.write(os.urandom(3000))
    (src / "text.txt").write_text("plain words\n")
    (src / "stray.txt").write_bytes(b"one stray \x00 NUL in a line of text\n")
    for policy in ("fail", "skip"):
        docs, report, result = run(tmp_path, [src], unit="line", on_error=policy)
        assert sorted(d["text"] for d in docs) == ["one stray  NUL in a line of text", "plain words"]
        assert report["binary_files_skipped"] == 3 and result.metrics["binary_files_skipped"] == 3.0
        reasons = {Path(s["path"]).name: s["reason"] for s in report["files_skipped"]}
        assert set(reasons) == {"image.png", "utf16.txt", "packed.txt.gz"}
        assert all("binary:" in r for r in reasons.values()) and "first NUL at byte 8" in reasons["image.png"]
        assert report["repairs"]["nul_removed"] == 1
    (src / "text.txt").unlink()
    (src / "stray.txt").unlink()
    with pytest.raises(InputError, match=r"inputs yield no documents .*3 file\(s\) skipped, 3 of them binary\); "
                                         r"nothing textual is left"):
        run(tmp_path, [src], unit="line")
    # invalid UTF-8 inside a text file keeps the strict policy (and its byte offset) past the first block
    late = tmp_path / "late.txt"
    late.write_bytes(b"x" * 9000 + b"\n\xff\n")
    with pytest.raises(InputError, match=r"late.txt:2: invalid UTF-8 at byte offset 9001"):
        run(tmp_path, [late], unit="line")
