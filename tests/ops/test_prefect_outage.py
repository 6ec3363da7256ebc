"""The Prefect API server SIGKILLed during the rnn stage (issue 17, item 6: "same for the Prefect API going
away"): the stage's computation does not depend on it, so the trained model is committed; the run ends
with one line naming the API (exit 1), and a rerun against a new server finds rnn cached.

Real processes: a ``prefect server`` of this test's own (the session's is shared), ``arpipe run`` as a
user runs it against it, MLflow on a SQLite file. The server's process group is killed as soon as the rnn
stage has started building (its ``.partial-<key>`` directory exists).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

from tests.conftest import FAST, write_corpus
from tests.ops.conftest import base_env, prefect_server_process, run_killing_during_rnn

ARPIPE = [sys.executable, "-m", "flows.cli", "run"]


def test_prefect_server_killed_during_rnn_stage(tmp_path):
    corpus = write_corpus(tmp_path / "corpus.txt", n_paragraphs=300)
    work = tmp_path / "work"
    home = tmp_path / "prefect-client-home"
    home.mkdir()
    args = [f"--set=work_dir={work}", f"--set=ingest.inputs=[{corpus}]", "--set=ingest.valid_fraction=0.1",
            "--set=ingest.test_fraction=0.1", "--set=ngram.order=2", *(f"--set={s}" for s in FAST),
            "--set=rnn.epochs=4", f"--set=tracking.uri=sqlite:///{tmp_path / 'mlflow.db'}"]
    with prefect_server_process() as server:
        env = base_env(PREFECT_API_URL=server.url, PREFECT_HOME=str(home))
        code, stderr = run_killing_during_rnn([*ARPIPE, *args], env, tmp_path, work,
                                              lambda: os.killpg(server.process.pid, signal.SIGKILL))
        url = server.url

    assert code == 1, stderr[-3000:]
    rnn_dir = work / "rnn" / (work / "rnn" / "LATEST").read_text().strip()
    assert (rnn_dir / "manifest.json").is_file() and (rnn_dir / "model" / "model.pt").is_file()
    last = stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: the Prefect API at {url} stopped answering"), stderr[-3000:]
    assert "Traceback" not in stderr, stderr[-3000:]

    with prefect_server_process() as server:  # a new server (a restarted one has another port)
        env = base_env(PREFECT_API_URL=server.url, PREFECT_HOME=str(home))
        rerun = subprocess.run([*ARPIPE, "--json", *args], env=env, cwd=tmp_path, capture_output=True, text=True,
                               timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    states = {s["stage"]: s["state"] for s in json.loads(rerun.stdout)["stages"]}
    assert states["rnn"] == "cached", states
