"""The Prefect and MLflow servers on a real PostgreSQL, started as docker-compose.yml starts them, without
Docker: Debian's PostgreSQL (``initdb``/``postgres`` from the ``postgresql`` package) in a temporary
directory, initialised with ``docker/postgres-init.sql``; the Prefect server on
``PREFECT_API_DATABASE_CONNECTION_URL`` and ``mlflow server`` with the compose file's backend store
scheme (its driver must be installed), ``--workers`` and ``--uvicorn-opts``.

Then the healthchecks the compose file uses are checked to see the database: they fail while
PostgreSQL is down and pass again after it restarts, and what was written before is still there.
Skipped, with the reason, where no PostgreSQL server binaries are installed.
"""

from __future__ import annotations

import glob
import os
import pwd
import re
import secrets
import shutil
import subprocess
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import httpx
import pytest
import yaml

from tests.ops.conftest import ROOT, base_env, free_port, require_binary, server

PG_USER = "arpipe"


def pg_bindir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


BINDIR = pg_bindir()
pytestmark = pytest.mark.skipif(BINDIR is None, reason="no PostgreSQL server binaries (apt-get install postgresql)")


def compose_services() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]


def healthcheck_url(service: dict, port: int) -> str:
    """The URL a compose service's python healthcheck opens, on this test's port."""
    url = re.search(r"urlopen\('(http://[^']+)'", " ".join(service["healthcheck"]["test"])).group(1)
    return re.sub(r"127\.0\.0\.1:\d+", f"127.0.0.1:{port}", url)


class Postgres:
    """A PostgreSQL cluster in ``root``, run as the postgres user when the tests run as root."""

    def __init__(self, root: Path, password: str):
        self.root, self.password, self.port = root, password, free_port()
        self.data, self.sock = root / "data", root / "sock"
        self.user = pwd.getpwnam("postgres") if os.getuid() == 0 else None
        self.process: subprocess.Popen | None = None
        self.log = root / "postgres.log"

    def _run(self, *cmd: str) -> None:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=120, **self._as_user())
        assert p.returncode == 0, (p.stdout + p.stderr)[-2000:]

    def _as_user(self) -> dict:
        return {"user": self.user.pw_uid, "group": self.user.pw_gid} if self.user else {}

    def initdb(self) -> None:
        self.sock.mkdir()
        pwfile = self.root / "pw"
        pwfile.write_text(self.password + "\n")
        if self.user:
            for p in (self.root, self.sock, pwfile):
                os.chown(p, self.user.pw_uid, self.user.pw_gid)
        self._run(str(BINDIR / "initdb"), "-D", str(self.data), "-U", PG_USER, f"--pwfile={pwfile}",
                  "--auth-local=trust", "--auth-host=scram-sha-256", "--encoding=UTF8", "--locale=C.UTF-8")
        pwfile.unlink()

    def start(self) -> None:
        with open(self.log, "ab") as out:
            self.process = subprocess.Popen(
                [str(BINDIR / "postgres"), "-D", str(self.data), "-p", str(self.port), "-k", str(self.sock),
                 "-c", "listen_addresses=127.0.0.1"], stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True, **self._as_user())
        for _ in range(240):
            if self.process.poll() is not None:
                pytest.fail(f"postgres exited: {self.log.read_text()[-2000:]}")
            if subprocess.run([str(BINDIR / "pg_isready"), "-h", str(self.sock), "-p", str(self.port)],
                              capture_output=True).returncode == 0:
                return
            time.sleep(0.5)
        pytest.fail(f"postgres did not accept connections: {self.log.read_text()[-2000:]}")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(2)  # SIGINT: fast shutdown, as the compose file's stop_signal
            self.process.wait(60)

    def url(self, scheme: str, db: str) -> str:
        return f"{scheme}://{PG_USER}:{self.password}@127.0.0.1:{self.port}/{db}"

    def run_init_script(self, script: Path, db: str) -> None:
        """``psql -f`` as the postgres image's entrypoint runs it: one statement at a time, autocommit."""
        import psycopg

        sql = "\n".join(line for line in script.read_text().splitlines() if not line.lstrip().startswith("--"))
        with psycopg.connect(self.url("postgresql", db), autocommit=True) as conn:
            for statement in filter(None, (s.strip() for s in sql.split(";"))):
                conn.execute(statement)


@contextmanager
def postgres() -> Iterator[Postgres]:
    root = Path(tempfile.mkdtemp(prefix="arpipe-pg-"))
    pg = Postgres(root, secrets.token_urlsafe(16))
    try:
        pg.initdb()
        pg.start()
        import psycopg

        with psycopg.connect(pg.url("postgresql", "postgres"), autocommit=True) as conn:
            conn.execute("CREATE DATABASE prefect")  # POSTGRES_DB in the compose file
        init = next(v for v in compose_services()["postgres"]["volumes"] if "docker-entrypoint-initdb.d" in v)
        pg.run_init_script(ROOT / init.split(":")[0], "prefect")
        yield pg
    finally:
        pg.stop()
        shutil.rmtree(root, ignore_errors=True)


def mlflow_server_args(pg: Postgres, port: int, artifacts: Path) -> list[str]:
    """``mlflow server`` with the compose file's scheme, workers and uvicorn options."""
    text = " ".join(compose_services()["mlflow"]["command"])
    scheme = re.search(r'MLFLOW_BACKEND_STORE_URI="([\w+]+)://', text).group(1)  # compose passes it in the env
    workers = re.search(r"--workers (\d+)", text).group(1)
    uvicorn_opts = re.search(r'--uvicorn-opts "([^"]+)"', text).group(1)
    return [require_binary("mlflow"), "server", "--host", "127.0.0.1", "--port", str(port), "--workers", workers,
            "--uvicorn-opts", uvicorn_opts, "--backend-store-uri", pg.url(scheme, "mlflow"),
            "--serve-artifacts", "--artifacts-destination", str(artifacts)]


def status(url: str) -> int:
    try:
        return httpx.get(url, timeout=10).status_code
    except httpx.HTTPError:
        return 0


def wait_for(url: str, ok: bool, attempts: int = 120) -> int:
    """Poll ``url`` (bounded) until it answers 200 (``ok``) or anything else; returns the last status."""
    for _ in range(attempts):
        code = status(url)
        if (code == 200) == ok:
            return code
        time.sleep(1)
    return code


def test_servers_on_postgres_see_the_database_and_recover_after_it_restarts(tmp_path):
    pytest.importorskip("psycopg", reason="psycopg is not installed (pip install -e '.[test]')")
    services = compose_services()
    env_url = services["prefect-server"]["environment"]["PREFECT_API_DATABASE_CONNECTION_URL"]
    prefect_scheme = env_url.split("://")[0]
    with postgres() as pg:
        p_port, m_port = free_port(), free_port()
        p_ready, m_ready = (healthcheck_url(services["prefect-server"], p_port),
                            healthcheck_url(services["mlflow"], m_port))
        assert p_ready.endswith("/api/ready") and "/api/2.0/mlflow/" in m_ready

        p_home = tmp_path / "prefect-home"
        p_home.mkdir()
        p_env = base_env(PREFECT_HOME=str(p_home), PREFECT_UI_ENABLED="false",
                         PREFECT_API_DATABASE_CONNECTION_URL=pg.url(prefect_scheme, "prefect"))
        p_cmd = [require_binary("prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(p_port)]
        m_root = tmp_path / "mlflow"
        m_root.mkdir()
        with server(p_cmd, p_env, p_ready, f"http://127.0.0.1:{p_port}/api", p_home) as prefect, \
                server(mlflow_server_args(pg, m_port, m_root / "artifacts"), base_env(), m_ready,
                       f"http://127.0.0.1:{m_port}", m_root) as mlflow_srv:
            from mlflow.tracking import MlflowClient

            client = MlflowClient(tracking_uri=mlflow_srv.url)
            exp = client.create_experiment("pg-check")
            run = client.create_run(exp, run_name="before-restart")
            (tmp_path / "note.txt").write_text("served by the MLflow server\n")
            client.log_artifact(run.info.run_id, str(tmp_path / "note.txt"))
            client.set_terminated(run.info.run_id)
            flow = httpx.post(f"{prefect.url}/flows/", json={"name": "pg-check"}, timeout=30)
            assert flow.status_code in (200, 201), flow.text

            pg.stop()
            # the healthchecks see the database: both fail while it is down
            assert wait_for(p_ready, ok=False) == 503
            # MLflow answers 5xx, or its request hangs on the dead pool past the 10 s client timeout (0):
            # either fails the compose healthcheck, which has its own timeout
            m_down = wait_for(m_ready, ok=False)
            assert m_down == 0 or m_down >= 500, m_down
            assert status(f"http://127.0.0.1:{p_port}/api/health") == 200  # what the old check asked

            pg.start()
            assert wait_for(p_ready, ok=True) == 200, prefect.log.read_text()[-2000:]
            assert wait_for(m_ready, ok=True) == 200, mlflow_srv.log.read_text()[-2000:]
            # what was written before is there, and both accept writes again
            assert client.get_run(run.info.run_id).info.status == "FINISHED"
            assert [a.path for a in client.list_artifacts(run.info.run_id)] == ["note.txt"]
            local = client.download_artifacts(run.info.run_id, "note.txt", str(tmp_path / "dl"))
            assert Path(local).read_text() == "served by the MLflow server\n"
            assert client.create_run(exp, run_name="after-restart").info.status == "RUNNING"
            assert httpx.get(f"{prefect.url}/flows/name/pg-check", timeout=30).json()["id"] == flow.json()["id"]
            assert mlflow_srv.process.poll() is None and prefect.process.poll() is None
