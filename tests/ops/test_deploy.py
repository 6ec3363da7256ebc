"""``prefect deploy`` with this repository's prefect.yaml against a real Prefect server, and a process
worker running one of the deployments, as the docker compose worker does."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import yaml
from prefect.client.orchestration import SyncPrefectClient

from flows.stages import STAGE_NAMES
from tests.conftest import write_corpus
from tests.ops.conftest import ROOT, client_env, require_binary


def prefect(env, *args: str, timeout: int = 120) -> subprocess.CompletedProcess:
    p = subprocess.run([require_binary("prefect"), "--no-prompt", *args], env=env, cwd=ROOT,
                       capture_output=True, text=True, timeout=timeout)
    assert p.returncode == 0, (p.stdout + p.stderr)[-3000:]
    return p


def test_prefect_yaml_declares_nightly_and_rerun_stage():
    spec = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    by_name = {d["name"]: d for d in spec["deployments"]}
    assert set(by_name) == {"nightly", "rerun-stage"}
    assert all(d["entrypoint"] == "flows/pipeline.py:pipeline" for d in by_name.values())
    assert all(d["work_pool"]["name"] == "arpipe-process" for d in by_name.values())
    assert by_name["nightly"]["schedules"][0]["cron"] == "0 3 * * *"
    assert by_name["rerun-stage"]["parameters"]["only"] in STAGE_NAMES


def test_deploy_all_then_a_process_worker_runs_rerun_stage(prefect_server, mlflow_server, tmp_path):
    env = client_env(prefect_server, tmp_path)
    before = (ROOT / "prefect.yaml").read_text()
    prefect(env, "work-pool", "create", "arpipe-process", "--type", "process")
    prefect(env, "deploy", "--all")
    assert (ROOT / "prefect.yaml").read_text() == before  # deploy must not rewrite the file

    with SyncPrefectClient(prefect_server.url) as client:
        nightly = client.read_deployment_by_name("arpipe/nightly")
        rerun = client.read_deployment_by_name("arpipe/rerun-stage")
        assert nightly.work_pool_name == rerun.work_pool_name == "arpipe-process"
        assert nightly.entrypoint == rerun.entrypoint == "flows/pipeline.py:pipeline"
        assert [(s.schedule.cron, s.active) for s in nightly.schedules] == [("0 3 * * *", True)]
        assert rerun.schedules == [] and rerun.parameters == {"only": "evaluate"}
        # no pull step in prefect.yaml: deploy records its own directory for the worker to run in
        assert nightly.pull_steps == [{"prefect.deployments.steps.set_working_directory": {"directory": str(ROOT)}}]
        assert {"config", "only", "rerun_from"} <= set(rerun.parameter_openapi_schema["properties"])

        # run the one-stage deployment for ingest (no upstream needed) on a worker of the pool
        corpus = write_corpus(tmp_path / "corpus" / "a.txt", n_paragraphs=60)
        config = {"work_dir": str(tmp_path / "work"), "tracking": {"uri": mlflow_server.url},
                  "ingest": {"inputs": [str(corpus)], "valid_fraction": 0.1, "test_fraction": 0.1}}
        run = client.create_flow_run_from_deployment(rerun.id, parameters={"config": config, "only": "ingest"})

    worker = subprocess.run(
        [require_binary("prefect"), "worker", "start", "--pool", "arpipe-process", "--type", "process",
         "--run-once"], env=env, cwd=ROOT, capture_output=True, text=True, timeout=240)
    with SyncPrefectClient(prefect_server.url) as client:
        deadline = time.monotonic() + 60
        while not (state := client.read_flow_run(run.id).state).is_final() and time.monotonic() < deadline:
            time.sleep(1)
    assert state.is_completed(), (state, (worker.stdout + worker.stderr)[-3000:])
    records = [json.loads(p.read_text()) for p in (tmp_path / "work" / "runs").glob("*.json")]
    assert [(r["mode"], r["flow_run_id"]) for r in records] == [("only:ingest", str(run.id))]
    out = Path(records[0]["stages"]["ingest"]["output_dir"])
    assert (out / "manifest.json").is_file() and out.parent == tmp_path / "work" / "ingest"
