"""``arpipe run`` refuses inputs that cannot make a run before Prefect starts: one ``error:`` line, the
exit code, no traceback, and no Prefect home created (the temporary API never started)."""

from __future__ import annotations

import os
import subprocess
import sys
import zlib
from pathlib import Path

import pytest

from tests.conftest import write_corpus

ARPIPE = [sys.executable, "-m", "flows.cli"]


def arpipe(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PREFECT_API_URL", "MLFLOW_TRACKING_URI")}
    env["PREFECT_HOME"] = str(tmp_path / "prefect-home")
    return subprocess.run([*ARPIPE, *args, f"--set=work_dir={tmp_path / 'work'}",
                           f"--set=tracking.uri=sqlite:///{tmp_path / 'mlflow.db'}"],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)


def refused(p: subprocess.CompletedProcess, tmp_path: Path, rc: int, start: str) -> str:
    lines = p.stderr.strip().splitlines()
    assert p.returncode == rc, p.stderr[-2000:]
    assert len(lines) == 1 and lines[0].startswith(f"error: {start}"), p.stderr[-2000:]
    assert "Traceback" not in p.stderr + p.stdout
    # refused before the temporary Prefect API started: it creates its database in PREFECT_HOME first
    assert not list((tmp_path / "prefect-home").glob("*.db"))
    assert not (tmp_path / "mlflow.db").exists()  # and before the tracking store was touched
    return lines[0]


def test_fifo_in_the_inputs(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    write_corpus(src / "a.txt")
    os.mkfifo(src / "pipe.txt")
    line = refused(arpipe(tmp_path, "run", f"--set=ingest.inputs=[{src}]"), tmp_path, 1,
                   f"{src / 'pipe.txt'}: not a regular file (a named pipe)")
    assert "ingest.on_error=skip" in line
    line = refused(arpipe(tmp_path, "stage", "ingest", f"--set=ingest.inputs=[{src / 'pipe.txt'}]"), tmp_path, 1,
                   f"{src / 'pipe.txt'}: not a regular file (a named pipe)")


@pytest.mark.parametrize("text", ["three words here\n", "one document " * 2000 + "\n"], ids=["three-words", "one-doc"])
def test_three_words_or_one_document(tmp_path, text):
    corpus = tmp_path / "c.txt"
    corpus.write_text(text)
    refused(arpipe(tmp_path, "run", f"--set=ingest.inputs=[{corpus}]"), tmp_path, 1,
            "the valid split would be empty: the inputs give 1 document(s) (")


def test_only_binary_files(tmp_path):
    src = tmp_path / "img"
    src.mkdir()
    (src / "a.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + zlib.compress(os.urandom(2000)))
    refused(arpipe(tmp_path, "run", f"--set=ingest.inputs=[{src}]"), tmp_path, 1,
            "the inputs yield no documents: 1 file(s), 1 skipped:")


def test_unreachable_vocab_size_and_nonexistent_input(tmp_path):
    line = refused(arpipe(tmp_path, "run", "--set=tokenizer.vocab_size=1000000"), tmp_path, 2,
                   "tokenizer.vocab_size=1000000 cannot be reached: the train split")
    assert "lower tokenizer.vocab_size to" in line
    refused(arpipe(tmp_path, "run", "--set=tokenizer.vocab_size=4294967296"), tmp_path, 2,
            "invalid config: tokenizer.vocab_size = 4294967296: Input should be less than or equal to 16777216")
    refused(arpipe(tmp_path, "run", "--set=ingest.inputs=[nope/]"), tmp_path, 1, "input not found: 'nope/'")


def test_serve_refuses_inputs_up_front(tmp_path):
    refused(arpipe(tmp_path, "serve", "--cron", "0 3 * * *", "--set=ingest.inputs=[nope.txt]"), tmp_path, 1,
            "input not found: 'nope.txt'")
