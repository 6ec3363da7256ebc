"""The run log: which stage outputs each finished pipeline run used.

In: a run summary (flow run id, MLflow run id, per stage its output directory and state). Out:
``<work_dir>/runs/<finished-utc>-<flow_run_id>.json``, one small file per finished run, written
atomically. Retention (``arpipe gc --keep N``) reads these to know what the last N runs still need.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Optional

from arcore.io import atomic_write_json

RUNS_DIR = "runs"


def record_run(work_dir: Path, summary: dict, mode: str) -> Path:
    runs = Path(work_dir) / RUNS_DIR
    runs.mkdir(parents=True, exist_ok=True)
    finished = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    record = {
        "finished": finished,
        "mode": mode,
        "flow_run_id": summary.get("flow_run_id"),
        "mlflow_run_id": summary.get("mlflow_run_id"),
        "stages": {s["stage"]: {"output_dir": s["output_dir"], "state": s["state"]} for s in summary["stages"]},
    }
    path = runs / f"{finished}-{summary.get('flow_run_id') or 'local'}.json"
    atomic_write_json(path, record)
    return path


def read_runs(work_dir: Path, last: Optional[int] = None) -> list[dict]:
    """Run records, oldest first (file names sort by finish time); unreadable records are skipped."""
    paths = sorted((Path(work_dir) / RUNS_DIR).glob("*.json"))
    records = []
    for p in paths:
        try:
            records.append(json.loads(p.read_text()) | {"path": str(p)})
        except (OSError, ValueError):
            continue
    return records[-last:] if last else records


def latest_outputs(work_dir: Path, stages: tuple[str, ...]) -> dict[str, Path]:
    """Output directories of ``stages`` that belong together: those of the latest finished run, else
    (for a stage that run did not have, or whose output is gone) that stage's ``LATEST`` output."""
    from arcore.stage import MANIFEST, latest

    runs = read_runs(work_dir, last=1)
    dirs = {name: Path(s["output_dir"]) for name, s in runs[0]["stages"].items()} if runs else {}
    out: dict[str, Path] = {}
    for stage in stages:
        if stage in dirs and (dirs[stage] / MANIFEST).is_file():
            out[stage] = dirs[stage]
        elif (d := latest(work_dir, stage)) is not None:
            out[stage] = d.path
    return out
