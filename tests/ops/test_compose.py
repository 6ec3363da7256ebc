"""The self-hosted stack's files: docker-compose.yml, Dockerfile, .env.example, .dockerignore.

The docker engine is not needed: the compose file is checked structurally with PyYAML (services,
loopback-only ports, healthchecks, restart policies, database URLs, volumes, variables), and with
``docker compose config`` as well where the compose plugin is installed. test_compose_stack.py starts
the stack for real where an engine answers; test_postgres_store.py runs its servers on a real PostgreSQL.
"""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest
import yaml

from tests.ops.conftest import ROOT

SERVICES = {"postgres", "prefect-server", "mlflow", "worker"}
DASK_SERVICES = {"dask-scheduler", "dask-worker"}  # profile "dask": started only with --profile dask


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def command_text(service: dict) -> str:
    cmd = service.get("command", "")
    return " ".join(cmd) if isinstance(cmd, list) else cmd


def test_services_healthchecks_restart_and_loopback_ports(compose):
    services = compose["services"]
    assert {n for n, svc in services.items() if "profiles" not in svc} == SERVICES
    assert {n for n, svc in services.items() if svc.get("profiles") == ["dask"]} == DASK_SERVICES
    for name, svc in services.items():
        assert svc.get("restart") in {"unless-stopped", "always"}, name
        assert svc["healthcheck"]["test"], name
        for port in svc.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} beyond loopback"
    assert "ports" not in services["postgres"]  # reachable from the other services only
    published = {svc: [p.rsplit(":", 1)[1] for p in services[svc].get("ports", [])] for svc in services}
    assert published["prefect-server"] == ["4200"] and published["mlflow"] == ["5000"]
    # the checks see the database: Prefect's readiness endpoint and a query of MLflow's store (their
    # /health endpoints stay 200 while PostgreSQL is down), both databases for PostgreSQL itself
    assert "/api/ready" in " ".join(services["prefect-server"]["healthcheck"]["test"])
    assert "/api/2.0/mlflow/experiments/search" in " ".join(services["mlflow"]["healthcheck"]["test"])
    pg_check = " ".join(services["postgres"]["healthcheck"]["test"])
    assert "-d prefect" in pg_check and "-d mlflow" in pg_check


def test_servers_use_postgres_and_start_after_it_is_healthy(compose):
    s = compose["services"]
    assert s["prefect-server"]["environment"]["PREFECT_API_DATABASE_CONNECTION_URL"].startswith(
        "postgresql+asyncpg://")
    assert "@postgres:5432/prefect" in s["prefect-server"]["environment"]["PREFECT_API_DATABASE_CONNECTION_URL"]
    mlflow = command_text(s["mlflow"])
    # the driver named, and installed in the image (SQLAlchemy 2.1 maps a bare postgresql:// to psycopg 3)
    assert re.search(r'MLFLOW_BACKEND_STORE_URI="?postgresql\+psycopg://\S+@postgres:5432/mlflow', mlflow)
    # the URI holds the password: in the environment, not on mlflow's command line (`ps` shows argv)
    assert "--backend-store-uri" not in mlflow and "$${POSTGRES_PASSWORD}" in mlflow
    assert "--timeout-worker-healthcheck" in mlflow  # uvicorn's 5 s default crash-loops a busy host
    assert "--serve-artifacts" in mlflow
    destination = re.search(r"--artifacts-destination (\S+)", mlflow).group(1)
    assert f"mlartifacts:{destination}" in s["mlflow"]["volumes"]  # a named volume, served by the server
    for name in ("prefect-server", "mlflow"):
        assert s[name]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert {dep: c["condition"] for dep, c in s["worker"]["depends_on"].items()} == {
        "prefect-server": "service_healthy", "mlflow": "service_healthy"}
    init = [v for v in s["postgres"]["volumes"] if "docker-entrypoint-initdb.d" in v]
    assert init and "pg_trgm" in (ROOT / init[0].split(":")[0]).read_text()
    assert set(compose["volumes"]) == {"pgdata", "mlartifacts", "work"}


def test_worker_runs_this_projects_flows_on_a_process_pool(compose):
    worker = compose["services"]["worker"]
    cmd = command_text(worker)
    assert "prefect worker start" in cmd and "--type process" in cmd and "--pool" in cmd
    assert worker["environment"]["PREFECT_API_URL"] == "http://prefect-server:4200/api"
    assert worker["environment"]["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
    # links in Prefect open in the host's browser: the published port, not the service name
    assert worker["environment"]["ARPIPE_MLFLOW_UI_URL"] == "http://127.0.0.1:${MLFLOW_PORT:-5000}"
    assert worker["environment"]["PREFECT_UI_URL"] == "http://127.0.0.1:${PREFECT_PORT:-4200}"
    assert worker["build"]["dockerfile"] == "Dockerfile" and worker["working_dir"] == "/app"
    pool = yaml.safe_load((ROOT / "prefect.yaml").read_text())["deployments"][0]["work_pool"]["name"]
    assert "${PREFECT_WORK_POOL:-" + pool + "}" in cmd


def test_dask_profile_runs_a_scheduler_and_workers_reporting_to_prefect(compose):
    s = compose["services"]
    scheduler, worker = s["dask-scheduler"], s["dask-worker"]
    assert command_text(scheduler).startswith("dask scheduler") and "--port 8786" in command_text(scheduler)
    assert command_text(worker).startswith("dask worker tcp://dask-scheduler:8786")
    assert worker["environment"]["PREFECT_API_URL"] == "http://prefect-server:4200/api"
    assert worker["depends_on"]["dask-scheduler"]["condition"] == "service_healthy"
    assert worker["deploy"]["replicas"] >= 2 and worker["image"] == s["worker"]["image"]
    # the runner spec the README gives for this stack parses
    from arcore.config import RunnerSpec

    assert RunnerSpec.parse("dask://dask-scheduler:8786").address == "tcp://dask-scheduler:8786"


def test_env_example_names_every_variable_and_holds_no_secret(compose):
    text = (ROOT / "docker-compose.yml").read_text()
    used = set(re.findall(r"(?<!\$)\$\{([A-Z_]+)", text))
    example = dict(line.split("=", 1) for line in (ROOT / ".env.example").read_text().splitlines()
                   if line and not line.startswith("#"))
    assert used <= set(example), f"missing from .env.example: {used - set(example)}"
    assert "change-me" in example["POSTGRES_PASSWORD"]
    # the password has no default in compose: `up` refuses to start without a .env
    assert "POSTGRES_PASSWORD:?" in text
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".env", ".venv", "work", "mlruns", ".git"} <= set(ignored)


def test_base_images_are_variables_with_docker_hub_defaults(compose):
    s = compose["services"]
    assert s["postgres"]["image"] == "${POSTGRES_IMAGE:-postgres:16}"
    args = s["worker"]["build"]["args"]
    assert args["BASE_IMAGE"] == "${BASE_IMAGE:-python:3.11-slim}"
    assert args["TORCH_INDEX_URL"] == "${TORCH_INDEX_URL-https://download.pytorch.org/whl/cpu}"  # empty: none
    assert s["postgres"]["stop_signal"] == "SIGINT"
    for name, svc in s.items():
        if name != "postgres":  # an init process passes SIGTERM on to the server or worker
            assert svc["init"] is True and svc["image"] == "arpipe:latest", name
    script = (ROOT / "docker" / "build-bases.sh").read_text()
    for tag in ("arpipe-base/python:3.11-", "arpipe-base/postgres:15-"):
        assert tag in script and tag in (ROOT / ".env.example").read_text()


def test_dockerfile_installs_pinned_project_with_cpu_torch():
    text = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^ARG BASE_IMAGE=python:3\.11-slim$", text, re.M)
    assert re.findall(r"^FROM \$\{BASE_IMAGE\}", text, re.M) == ["FROM ${BASE_IMAGE}"] * 2
    assert re.search(r"pip install .*-c constraints\.txt '\.\[postgres\]'", text)
    assert "ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu" in text
    assert "--find-links /tmp/wheels" in text and "torch.version.cuda" in text
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {"docker/*", "!docker/wheels", "!docker/certs"} <= set(ignored)
    final = text[text.rindex("\nFROM "):]  # the image's stage holds the project's files and prefect.yaml
    for path in ("arcore", "tasks", "flows", "prefect.yaml"):
        assert re.search(rf"^COPY (\S+ )*{re.escape(path)} ", final, re.M), path
    assert re.search(r"^USER \w+", text, re.M)  # servers do not run as root


def compose_plugin() -> bool:
    if not shutil.which("docker"):
        return False
    p = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True)
    return p.returncode == 0


@pytest.mark.skipif(not compose_plugin(), reason="the docker compose plugin is not installed")
def test_docker_compose_config_validates():
    p = subprocess.run(["docker", "compose", "--env-file", ".env.example", "config", "--quiet"],
                       cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
