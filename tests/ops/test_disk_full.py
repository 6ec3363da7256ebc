"""A full disk under the work dir (issue 17, item 10: "ENOSPC prints 6 tracebacks and a message without the
path"): one ``error:`` line naming the stage and where, exit 1, no traceback; committed outputs intact,
and the run continues once there is room. A real tmpfs of a few hundred kB is mounted as the work dir
(skipped where this process may not mount one)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from tests.conftest import FAST, write_corpus
from tests.ops.conftest import base_env


@pytest.fixture
def small_disk(tmp_path):
    mount = tmp_path / "small-disk"
    mount.mkdir()
    if shutil.which("mount") is None or subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=400k", "tmpfs", str(mount)], capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root or CAP_SYS_ADMIN)")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def test_full_disk_is_one_line_and_loses_nothing(small_disk, tmp_path):
    corpus = write_corpus(tmp_path / "corpus.txt", n_paragraphs=150)
    env = base_env(PREFECT_HOME=str(tmp_path / "prefect"))

    def run(work):
        return subprocess.run([sys.executable, "-m", "flows.cli", "run", "--json", f"--set=work_dir={work}",
                               f"--set=tracking.uri=sqlite:///{tmp_path / 'mlflow.db'}", f"--set=ingest.inputs=[{corpus}]",
                               "--set=ingest.valid_fraction=0.1", "--set=ingest.test_fraction=0.1",
                               "--set=ngram.order=3", *(f"--set={s}" for s in FAST)],
                              env=env, cwd=tmp_path, capture_output=True, text=True, timeout=900)

    full = run(small_disk / "work")
    assert full.returncode == 1, full.stderr[-3000:]
    errors = [line for line in full.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith("error: no space left on the device"), full.stderr[-3000:]
    last = errors[0]
    assert "Traceback" not in full.stderr, full.stderr[-3000:]
    summary = json.loads(full.stdout)
    done = [s for s in summary["stages"] if s["state"] in ("completed", "cached")]
    failed = [s for s in summary["stages"] if s["state"] == "failed"]
    assert failed and f"during stage {failed[0]['stage']}" in last
    for s in done:  # what committed before the disk filled is complete
        assert (small_disk / "work" / s["stage"] / "LATEST").is_file()

    work = tmp_path / "work"  # room again: the committed outputs carry over and the run completes
    shutil.copytree(small_disk / "work", work, ignore=shutil.ignore_patterns(".partial-*", ".lock-*"))
    again = run(work)
    assert again.returncode == 0, again.stderr[-3000:]
    states = {s["stage"]: s["state"] for s in json.loads(again.stdout)["stages"]}
    assert all(states[s["stage"]] == "cached" for s in done), states
