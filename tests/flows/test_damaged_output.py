"""A reused output is read as it was committed (issue 17, item 10): a file whose bytes or size changed since
its manifest was written makes the stage rebuild it, with a warning naming the file, and a dangling
``LATEST`` is repaired by the next run that uses the stage. Real pipeline runs on a small corpus."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from arcore.config import load_config
from arcore.stage import Manifest, StageDir, damaged_file
from flows.pipeline import pipeline
from tests.conftest import FAST, write_corpus


def _by_stage(summary) -> dict[str, dict]:
    return {s["stage"]: s for s in summary["stages"]}


def test_damaged_files_are_rebuilt_and_a_dangling_latest_repaired(prefect_harness, tmp_path, mlflow_uri, caplog):
    corpus = write_corpus(tmp_path / "corpus" / "a.txt", n_paragraphs=120)
    work = tmp_path / "work"
    cfg = load_config(overrides=[f"work_dir={work}", f"tracking.uri={mlflow_uri}", f"ingest.inputs=[{corpus}]",
                                 "ingest.valid_fraction=0.1", "ingest.test_fraction=0.1", "ngram.order=3", *FAST])
    first = _by_stage(pipeline(config=cfg))
    rnn_dir, ngram_dir = Path(first["rnn"]["output_dir"]), Path(first["ngram"]["output_dir"])
    digest = {d: json.loads((d / "manifest.json").read_text())["digest"] for d in (rnn_dir, ngram_dir)}

    model = rnn_dir / "model" / "model.pt"
    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte, same size
    model.write_bytes(bytes(data))
    arpa = next(ngram_dir.glob("*.arpa*"))
    with open(arpa, "ab") as f:
        f.write(b"\n")  # one byte more
    (work / "tokenizer" / "LATEST").write_text("0123456789abcdef\n")  # names an output that is gone

    with caplog.at_level(logging.WARNING, logger="arpipe"):
        second = _by_stage(pipeline(config=cfg))
    assert second["rnn"]["state"] == "completed" and second["ngram"]["state"] == "completed"
    assert {s: second[s]["state"] for s in ("ingest", "tokenizer", "shards", "infinigram")} == {
        s: "cached" for s in ("ingest", "tokenizer", "shards", "infinigram")}
    messages = [r.getMessage() for r in caplog.records]
    assert any("rnn: output" in m and "model/model.pt does not match the sha256 in its manifest" in m
               for m in messages), messages
    assert any(f"ngram: output" in m and f"{arpa.name} has" in m for m in messages), messages
    for d in (rnn_dir, ngram_dir):  # rebuilt in place, byte-identical to the first build
        assert json.loads((d / "manifest.json").read_text())["digest"] == digest[d]
    assert (work / "tokenizer" / "LATEST").read_text().strip() == Path(first["tokenizer"]["output_dir"]).name

    third = _by_stage(pipeline(config=cfg))  # intact again: reused, each file checked by its stat
    assert {s["state"] for s in third.values()} == {"cached"}


def test_damaged_file_names_the_file(tmp_path):
    from arcore.stage import StageOutput, build

    d = StageDir(tmp_path, "toy", "0" * 16)

    def compute(out: Path) -> StageOutput:
        (out / "a.bin").write_bytes(b"abc")
        (out / "sub").mkdir()
        (out / "sub" / "b.txt").write_text("hello")
        return StageOutput()

    m = build(d, compute, config={}, upstream={}, produced_by={})
    assert damaged_file(d, m) is None
    (d.path / "sub" / "b.txt").write_text("hellO")
    assert damaged_file(d, Manifest.read(d.path / "manifest.json")) == "sub/b.txt does not match the sha256 in its manifest"
    (d.path / "a.bin").unlink()
    assert damaged_file(d, m) == "a.bin is missing"
