"""The Compose stack started for real: images built without a registry, the four services healthy, a
deployment run end to end, PostgreSQL restarted under the servers, the dask profile, then ``down -v``.

The base images are built from Debian's packages by ``docker/build-bases.sh`` (kept once built, like
Docker's build cache for the project image), so nothing is pulled from Docker Hub. The build context
gets what the README's "no Docker Hub" section tells a user to put there, where it is missing: torch's
CPU wheel in ``docker/wheels/`` (``pip download``, this machine's pip configuration) and this machine's
extra CA certificates in ``docker/certs/``. The stack runs as its own compose project on free loopback
ports, so it never touches a stack a user has up.

Skipped, with the reason, where no Docker engine answers or the compose plugin is missing (CI does not
start one). One test: the stack costs minutes to start, and every step needs the one before it.
"""

from __future__ import annotations

import glob
import json
import secrets
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import FAST, write_corpus
from tests.ops.conftest import ROOT, free_port

PYTHON_BASE = "arpipe-base/python:3.11-bookworm"
POSTGRES_BASE = "arpipe-base/postgres:15-bookworm"
SERVICES = {"postgres", "prefect-server", "mlflow", "worker"}
STAGES = {"ingest", "tokenizer", "shards", "ngram", "rnn", "evaluate"}


def engine_problem() -> str | None:
    if not shutil.which("docker"):
        return "the docker CLI is not installed"
    try:
        if subprocess.run(["docker", "info"], capture_output=True, timeout=30).returncode != 0:
            return "no Docker engine answers (start dockerd)"
        if subprocess.run(["docker", "compose", "version"], capture_output=True, timeout=30).returncode != 0:
            return "the docker compose plugin is not installed"
    except subprocess.TimeoutExpired:
        return "the Docker engine does not answer within 30 s"
    return None


PROBLEM = engine_problem()
pytestmark = [pytest.mark.skipif(PROBLEM is not None, reason=str(PROBLEM)), pytest.mark.timeout(3600)]


def run(cmd: list[str], timeout: float = 600, **kw) -> subprocess.CompletedProcess:
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)
    assert p.returncode == 0, f"{' '.join(cmd[:6])} exited {p.returncode}:\n{(p.stdout + p.stderr)[-4000:]}"
    return p


def have_image(name: str) -> bool:
    return subprocess.run(["docker", "image", "inspect", name], capture_output=True).returncode == 0


def prepare_build_context() -> str:
    """Bases, the CPU torch wheel and extra CAs, as the README says; returns TORCH_INDEX_URL for .env."""
    if not (have_image(PYTHON_BASE) and have_image(POSTGRES_BASE)):
        if not shutil.which("mmdebstrap"):
            pytest.skip("the Debian-built base images are missing and mmdebstrap is not installed")
        run(["sh", str(ROOT / "docker" / "build-bases.sh")], timeout=1800)
    wheels = ROOT / "docker" / "wheels"
    if not glob.glob(str(wheels / "torch-2.13.0+cpu-*.whl")):
        run([sys.executable, "-m", "pip", "download", "torch==2.13.0", "--no-deps", "-d", str(wheels)], timeout=900)
        if not glob.glob(str(wheels / "torch-2.13.0+cpu-*.whl")):
            pytest.skip("pip here does not find torch 2.13.0's CPU wheel for docker/wheels/")
    for crt in glob.glob("/usr/local/share/ca-certificates/*.crt"):
        target = ROOT / "docker" / "certs" / Path(crt).name
        if not target.exists():
            shutil.copyfile(crt, target)
    return ""


class Stack:
    def __init__(self, tmp_path: Path):
        self.project = f"arpipe-test-{secrets.token_hex(3)}"
        self.ports = {k: free_port() for k in ("PREFECT_PORT", "MLFLOW_PORT", "DASK_SCHEDULER_PORT",
                                               "DASK_DASHBOARD_PORT")}
        self.env_file = tmp_path / "stack.env"
        self.env_file.write_text("".join(f"{k}={v}\n" for k, v in {
            "POSTGRES_USER": "arpipe", "POSTGRES_PASSWORD": secrets.token_urlsafe(18),
            "PREFECT_WORK_POOL": "arpipe-process", "BASE_IMAGE": PYTHON_BASE, "POSTGRES_IMAGE": POSTGRES_BASE,
            "TORCH_INDEX_URL": prepare_build_context(), "PIP_INDEX_URL": "https://pypi.org/simple",
            **self.ports}.items()))
        self.prefect = f"http://127.0.0.1:{self.ports['PREFECT_PORT']}/api"
        self.mlflow = f"http://127.0.0.1:{self.ports['MLFLOW_PORT']}"

    def compose(self, *args: str, timeout: float = 900, **kw) -> subprocess.CompletedProcess:
        return run(["docker", "compose", "-p", self.project, "--env-file", str(self.env_file),
                    "-f", str(ROOT / "docker-compose.yml"), "--project-directory", str(ROOT), *args],
                   timeout=timeout, **kw)

    def ps(self) -> dict[str, dict]:
        out = self.compose("ps", "--all", "--format", "json").stdout.strip()
        rows = json.loads(out) if out.startswith("[") else [json.loads(line) for line in out.splitlines() if line]
        return {r["Name"]: r for r in rows}

    def wait_healthy(self, services: set[str], attempts: int = 120) -> dict[str, str]:
        health: dict[str, str] = {}
        for _ in range(attempts):
            health = {r["Service"]: r.get("Health", "") for r in self.ps().values() if r["Service"] in services}
            if set(health) >= services and all(h == "healthy" for h in health.values()):
                break
            time.sleep(2)
        return health

    def logs(self) -> str:
        p = subprocess.run(["docker", "compose", "-p", self.project, "--env-file", str(self.env_file), "-f",
                            str(ROOT / "docker-compose.yml"), "--project-directory", str(ROOT), "--profile",
                            "dask", "logs", "--no-color", "--tail", "40"], capture_output=True, text=True, timeout=120)
        return p.stdout[-8000:]

    def down(self) -> None:
        subprocess.run(["docker", "compose", "-p", self.project, "--env-file", str(self.env_file), "-f",
                        str(ROOT / "docker-compose.yml"), "--project-directory", str(ROOT), "--profile", "dask",
                        "down", "-v", "--remove-orphans"], capture_output=True, timeout=600)


def small_config() -> dict:
    """FAST's small models on a corpus in the work volume, as the nested dict the flow parameter takes."""
    config: dict = {"ingest": {"inputs": ["/app/work/corpus/a.txt"], "valid_fraction": 0.1, "test_fraction": 0.1}}
    for item in FAST:
        key, value = item.split("=", 1)
        section, name = key.split(".")
        config.setdefault(section, {})[name] = int(value) if value.isdigit() else value
    return config


def wait_final(client, flow_run_id, attempts: int = 900):
    for _ in range(attempts):
        state = client.read_flow_run(flow_run_id).state
        if state is not None and state.is_final():
            return state
        time.sleep(2)
    return state


def ready(url: str) -> bool:
    try:
        return httpx.get(url, timeout=10).status_code == 200
    except httpx.HTTPError:
        return False


def test_stack_builds_starts_runs_a_deployment_survives_a_database_restart_and_scales_on_dask(tmp_path):
    from mlflow.tracking import MlflowClient
    from prefect.client.orchestration import SyncPrefectClient
    from prefect.client.schemas.filters import (ArtifactFilter, ArtifactFilterFlowRunId, ArtifactFilterKey,
                                                FlowRunFilter, FlowRunFilterId)

    stack = Stack(tmp_path)
    timings: dict[str, float] = {}
    try:
        t = time.monotonic()
        stack.compose("build", timeout=3600)
        timings["build"] = time.monotonic() - t
        t = time.monotonic()
        stack.compose("up", "-d", "--wait", "--wait-timeout", "600", timeout=900)
        timings["up"] = time.monotonic() - t
        health = stack.wait_healthy(SERVICES)
        assert health == dict.fromkeys(SERVICES, "healthy"), (health, stack.logs())
        # both UIs are served (the Prefect server writes its UI bundle where its user may write)
        prefect_ui = stack.prefect.removesuffix("/api")
        assert httpx.get(f"{prefect_ui}/", timeout=10).status_code == 200
        ui_settings = httpx.get(f"{prefect_ui}/ui-settings", timeout=10).json()
        assert ui_settings["available_uis"] and ui_settings["api_url"] == stack.prefect, ui_settings
        assert httpx.get(f"{stack.mlflow}/", timeout=10).status_code == 200

        # the deployments, registered from the worker's container (the image holds prefect.yaml)
        stack.compose("exec", "-T", "worker", "prefect", "--no-prompt", "deploy", "--all")
        corpus = write_corpus(tmp_path / "a.txt", n_paragraphs=300)
        stack.compose("exec", "-T", "worker", "sh", "-c",
                      "mkdir -p /app/work/corpus && cat > /app/work/corpus/a.txt", input=corpus.read_text())

        config = small_config()
        with SyncPrefectClient(stack.prefect) as client:
            nightly = client.read_deployment_by_name("arpipe/nightly")
            rerun = client.read_deployment_by_name("arpipe/rerun-stage")
            assert nightly.work_pool_name == rerun.work_pool_name == "arpipe-process"
            t = time.monotonic()
            flow_run = client.create_flow_run_from_deployment(nightly.id, parameters={"config": config})
            state = wait_final(client, flow_run.id)
            timings["pipeline run"] = time.monotonic() - t
            assert state.is_completed(), (state, stack.logs())
            # the flow run's "MLflow run" link opens the server where the host's browser reaches it
            links = client.read_artifacts(artifact_filter=ArtifactFilter(
                flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run.id]), key=ArtifactFilterKey(any_=["mlflow-run"])))
            assert links and f"({stack.mlflow}/#/experiments/" in links[0].data, [a.data for a in links]

        # its MLflow runs are on the server: the parent, a child per stage, artifacts served over HTTP
        mlflow = MlflowClient(tracking_uri=stack.mlflow)
        exp = mlflow.get_experiment_by_name("arpipe")
        parents = mlflow.search_runs([exp.experiment_id], f"tags.`prefect.flow_run_id` = '{flow_run.id}'")
        assert len(parents) == 1 and parents[0].info.status == "FINISHED"
        parent = parents[0]
        children = mlflow.search_runs([exp.experiment_id], f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
        by_stage = {c.data.tags["arpipe.stage"]: c for c in children}
        assert STAGES <= set(by_stage), sorted(by_stage)
        evaluate = by_stage["evaluate"]
        assert evaluate.info.artifact_uri.startswith("mlflow-artifacts:")
        names = [a.path for a in mlflow.list_artifacts(evaluate.info.run_id)]
        assert "manifest.json" in names, names
        manifest = json.loads(Path(mlflow.download_artifacts(evaluate.info.run_id, "manifest.json",
                                                             str(tmp_path / "dl"))).read_text())
        assert manifest and by_stage["ngram"].data.metrics

        # PostgreSQL restarted under both servers: both see it go and come back, the history stays
        stack.compose("restart", "postgres", timeout=300)
        for url in (f"{stack.prefect}/ready",
                    f"{stack.mlflow}/api/2.0/mlflow/experiments/search?max_results=1"):
            assert any(ready(url) or time.sleep(2) for _ in range(120)), (url, stack.logs())
        health = stack.wait_healthy(SERVICES)
        assert health == dict.fromkeys(SERVICES, "healthy"), (health, stack.logs())
        assert mlflow.get_run(parent.info.run_id).info.status == "FINISHED"
        with SyncPrefectClient(stack.prefect) as client:
            assert client.read_flow_run(flow_run.id).state.is_completed()

        # the dask profile: a scheduler and two workers; a run from the worker fans its map steps out
        stack.compose("--profile", "dask", "up", "-d", "--wait", "--wait-timeout", "600", timeout=900)
        # the CLI reads .toml or .yaml configs (JSON is YAML)
        stack.compose("exec", "-T", "worker", "sh", "-c", "cat > /app/work/small.yaml", input=json.dumps(config))
        t = time.monotonic()
        out = stack.compose("exec", "-T", "worker", "arpipe", "run", "--config", "/app/work/small.yaml",
                            "--runner", "dask://dask-scheduler:8786", "--from", "shards", "--json").stdout
        timings["dask run"] = time.monotonic() - t
        summary = json.loads(out[out.index("{"):])
        assert summary["runner"] == "dask://dask-scheduler:8786"
        rows = {row["stage"]: row for row in summary["stages"]}  # one row per stage, in pipeline order
        assert {s: rows[s]["state"] for s in ("shards", "ngram")} == {"shards": "completed", "ngram": "completed"}
        # byte-identical to the local run, as the README says: the same n-gram figures
        figures = {k: v for k, v in rows["ngram"]["metrics"].items()
                   if k.endswith((".valid_perplexity", ".valid_bits_per_byte"))}
        assert figures and figures == {k: by_stage["ngram"].data.metrics[k] for k in figures}
        with SyncPrefectClient(stack.prefect) as client:
            pieces = [tr.name for tr in client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[summary["flow_run_id"]])))]
        assert any(n.startswith("shards-encode-") for n in pieces), pieces
        assert any(n.startswith("ngram-count-") for n in pieces), pieces

        # the worker stops on SIGTERM (its init passes the signal on), not on the SIGKILL after the grace
        stack.compose("stop", "-t", "120", "worker", timeout=300)
        worker = next(r for r in stack.ps().values() if r["Service"] == "worker")
        code = json.loads(run(["docker", "inspect", worker["Name"]]).stdout)[0]["State"]["ExitCode"]
        assert code != 137, f"the worker was killed after the stop timeout (exit {code})"
    finally:
        print(f"compose stack timings (s): { {k: round(v, 1) for k, v in timings.items()} }")
        stack.down()
