"""Two ``arpipe run`` started together on one fresh work dir (issue 17, item 10): Prefect's and MLflow's
first-time set-up (the Prefect home's database migrations, the MLflow store's tables) is serialized by a
lock in the work dir, so both runs complete instead of dying on SQLite errors. Real processes, started
at the same moment, each with the temporary Prefect server a user gets."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import FAST, write_corpus
from tests.ops.conftest import base_env


def test_two_runs_on_one_fresh_work_dir_both_complete(tmp_path):
    corpus = write_corpus(tmp_path / "corpus.txt", n_paragraphs=150)
    work = tmp_path / "work"
    env = base_env(PREFECT_HOME=str(work / "prefect"))
    env.pop("PREFECT_API_URL", None)  # the temporary server, as `make run` starts it
    args = [sys.executable, "-m", "flows.cli", "run", "--json", f"--set=work_dir={work}",
            f"--set=tracking.uri=sqlite:///{work / 'mlflow.db'}", f"--set=ingest.inputs=[{corpus}]",
            "--set=ingest.valid_fraction=0.1", "--set=ingest.test_fraction=0.1", "--set=ngram.order=2",
            *(f"--set={s}" for s in FAST)]
    runs = [subprocess.Popen(args, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for _ in range(2)]
    outs = [r.communicate(timeout=900) for r in runs]
    for r, (out, err) in zip(runs, outs):
        assert r.returncode == 0, err[-3000:]
        assert {s["state"] for s in json.loads(out)["stages"]} <= {"completed", "cached"}
    digests = [{s["stage"]: s["output_dir"] for s in json.loads(out)["stages"]} for out, _ in outs]
    assert digests[0] == digests[1]  # one output per stage and key, whichever run built it
