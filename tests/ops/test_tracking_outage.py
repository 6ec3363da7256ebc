"""The MLflow server SIGKILLed during the rnn stage: the trained model is committed, the run ends with one
line naming the store (exit 1), and a rerun against the restarted store finds rnn cached and logs it.

Real processes throughout: ``mlflow server`` (SQLite store, served artifacts), the session's ``prefect
server``, ``arpipe run`` as a user runs it. The server's process group is killed with SIGKILL as soon as
the rnn stage has started building (its ``.partial-<key>`` directory exists).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

from mlflow.tracking import MlflowClient

from tests.conftest import FAST, write_corpus
from tests.ops.conftest import client_env, mlflow_server_process, run_killing_during_rnn

ARPIPE = [sys.executable, "-m", "flows.cli", "run"]


def test_mlflow_server_killed_during_rnn_stage(prefect_server, tmp_path):
    corpus = write_corpus(tmp_path / "corpus.txt", n_paragraphs=300)
    work, store = tmp_path / "work", tmp_path / "mlflow-server"
    env = client_env(prefect_server, tmp_path)
    args = [f"--set=work_dir={work}", f"--set=ingest.inputs=[{corpus}]", "--set=ingest.valid_fraction=0.1",
            "--set=ingest.test_fraction=0.1", "--set=ngram.order=2", *(f"--set={s}" for s in FAST),
            "--set=rnn.epochs=4", "--set=tracking.request_timeout_s=2"]
    with mlflow_server_process(store) as server:
        code, stderr = run_killing_during_rnn([*ARPIPE, f"--set=tracking.uri={server.url}", *args], env, tmp_path,
                                              work, lambda: os.killpg(server.process.pid, signal.SIGKILL))
        url = server.url

    assert code == 1, stderr[-3000:]
    rnn_dir = work / "rnn" / (work / "rnn" / "LATEST").read_text().strip()
    assert stderr.strip().splitlines()[-1] == (
        f"error: the MLflow tracking store at {url} stopped answering during stage rnn; stage outputs are "
        f"committed in {rnn_dir}; rerun to log them")
    assert "Traceback" not in stderr
    assert (rnn_dir / "manifest.json").is_file() and (rnn_dir / "model" / "model.pt").is_file()

    with mlflow_server_process(store) as server:  # the same store, back (on another port)
        rerun = subprocess.run([*ARPIPE, "--json", f"--set=tracking.uri={server.url}", *args], env=env,
                               cwd=tmp_path, capture_output=True, text=True, timeout=600)
        assert rerun.returncode == 0, rerun.stderr[-3000:]
        summary = json.loads(rerun.stdout)
        states = {s["stage"]: s["state"] for s in summary["stages"]}
        assert states["rnn"] == "cached" and states["evaluate"] == "completed"
        client = MlflowClient(tracking_uri=server.url)
        rnn_run = client.get_run(next(s["mlflow_run_id"] for s in summary["stages"] if s["stage"] == "rnn"))
        assert rnn_run.info.status == "FINISHED" and rnn_run.data.tags["cached"] == "true"
        assert rnn_run.data.tags["arpipe.output_dir"] == str(rnn_dir)
        assert "best_valid_loss" in rnn_run.data.metrics
        assert {d["model"] for d in summary["registry"]} >= {"arpipe-rnn"}  # its model, never registered, is now
