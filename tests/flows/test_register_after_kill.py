"""A model committed by a run SIGKILLed before it registered is registered by the next run (issue 17).

The first ``arpipe run`` is killed (SIGKILL, its whole process group) as soon as the ngram output is
committed, so the kill lands in the rnn stage, before evaluate and register. The rerun finds ngram
``cached``; registration follows what the registry holds, so ``arpipe-ngram`` gets its version 1, tagged
with the output's digest. A third, unchanged run registers nothing. The MLflow runs the SIGKILL left
``RUNNING`` (no chance to end them) are marked ``KILLED`` by the rerun, which sees their process gone.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from mlflow.tracking import MlflowClient

from tests.conftest import FAST, write_corpus

ARPIPE = [sys.executable, "-m", "flows.cli", "run", "--json"]


def test_a_model_committed_before_a_kill_is_registered_by_the_next_run(prefect_harness, tmp_path, mlflow_uri):
    corpus = write_corpus(tmp_path / "corpus.txt", n_paragraphs=300)
    work = tmp_path / "work"
    args = [f"--set=work_dir={work}", f"--set=tracking.uri={mlflow_uri}", f"--set=ingest.inputs=[{corpus}]",
            "--set=ingest.valid_fraction=0.1", "--set=ingest.test_fraction=0.1", *(f"--set={s}" for s in FAST),
            "--set=rnn.epochs=3", "--set=registry.families=[ngram]"]
    env = {**os.environ, "PREFECT_API_URL": prefect_harness}
    victim = subprocess.Popen([*ARPIPE, *args], env=env, cwd=tmp_path, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 600
    while not (work / "ngram" / "LATEST").is_file():
        assert victim.poll() is None, "the run ended before its ngram output was committed"
        assert time.monotonic() < deadline
        time.sleep(0.05)
    os.killpg(victim.pid, signal.SIGKILL)
    victim.wait()
    assert not (work / "evaluate").exists() or not (work / "evaluate" / "LATEST").exists()
    committed = json.loads((work / "ngram" / (work / "ngram" / "LATEST").read_text().strip() / "manifest.json")
                           .read_text())
    client = MlflowClient(mlflow_uri)
    assert client.search_model_versions("name = 'arpipe-ngram'") == []
    experiment = client.get_experiment_by_name("arpipe").experiment_id
    left = {r.info.run_id for r in client.search_runs([experiment], "attributes.status = 'RUNNING'")}
    assert len(left) >= 2  # the parent and the child of the stage in progress at least

    rerun = subprocess.run([*ARPIPE, *args], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    summary = json.loads(rerun.stdout)
    assert {s["stage"]: s["state"] for s in summary["stages"]}["ngram"] == "cached"
    assert {client.get_run(r).info.status for r in left} == {"KILLED"}
    [decision] = summary["registry"]
    assert (decision["model"], decision["version"], decision["promoted"]) == ("arpipe-ngram", "1", True)
    version = client.get_model_version("arpipe-ngram", "1")
    assert version.tags["arpipe.output_digest"] == committed["digest"]
    ngram_run = next(s["mlflow_run_id"] for s in summary["stages"] if s["stage"] == "ngram")
    assert version.run_id == ngram_run  # the cached stage's run of this rerun holds the logged model

    again = subprocess.run([*ARPIPE, *args], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert json.loads(again.stdout)["registry"] == []
    assert len(client.search_model_versions("name = 'arpipe-ngram'")) == 1
