"""Issue 17, item 7: keys and data identity do not depend on where the checkout lives. A checkout and
its work dir copied elsewhere find every stage cached; the documents' sources are relative paths."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq

from flows.stages import default_stage_names
from tests.conftest import FAST, write_corpus

ROOT = Path(__file__).resolve().parents[2]
IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc")


def run_in(checkout: Path, env: dict, mlflow_db: Path) -> dict:
    """``arpipe run`` with the copy's own code (``-m`` puts the cwd first on sys.path) and relative paths."""
    p = subprocess.run(
        [sys.executable, "-m", "flows.cli", "run", "--json", "--set=work_dir=work", "--set=ingest.inputs=[corpus.txt]",
         f"--set=tracking.uri=sqlite:///{mlflow_db}", *(f"--set={s}" for s in FAST)],
        capture_output=True, text=True, env=env, cwd=checkout, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    return json.loads(p.stdout)


def test_a_copied_checkout_and_work_dir_find_every_stage_cached(prefect_harness, tmp_path):
    first = tmp_path / "one" / "arpipe"
    for package in ("arcore", "tasks", "flows"):
        shutil.copytree(ROOT / package, first / package, ignore=IGNORE)
    write_corpus(first / "corpus.txt")
    env = {**os.environ, "PREFECT_API_URL": prefect_harness, "PYTHONPATH": ""}
    env.pop("MLFLOW_TRACKING_URI", None)
    built = run_in(first, env, tmp_path / "mlflow-one.db")
    assert [s["state"] for s in built["stages"]] == ["completed"] * len(default_stage_names())

    second = tmp_path / "elsewhere" / "deeper" / "copy"
    shutil.copytree(first, second, symlinks=True)
    again = run_in(second, env, tmp_path / "mlflow-two.db")
    assert [(s["stage"], s["state"]) for s in again["stages"]] == [(s, "cached") for s in default_stage_names()]
    for one, two in zip(built["stages"], again["stages"]):
        assert Path(two["output_dir"]).is_relative_to(second)  # the copy's own outputs, not the original's
        assert Path(one["output_dir"]).relative_to(first) == Path(two["output_dir"]).relative_to(second)
    ingest = Path(again["stages"][0]["output_dir"])
    sources = pq.read_table(ingest / "documents.parquet", columns=["source"]).column("source").to_pylist()
    assert sources[0] == "corpus.txt:1" and all(s.startswith("corpus.txt:") for s in sources)
