"""Real servers for the operations tests: ``prefect server start`` and ``mlflow server`` as subprocesses.

Each server gets a free 127.0.0.1 port and its own home or store in a temporary directory, is polled on
its health endpoint until it answers (bounded), and is stopped (its whole process group: both servers
spawn children) when the fixture ends, whatever the test did.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
STARTUP_TIMEOUT_S = 120


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def base_env(**extra: str) -> dict[str, str]:
    """The test process's environment without any Prefect or MLflow endpoint in it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MLFLOW_"))}
    env.update(PREFECT_SERVER_ANALYTICS_ENABLED="false", PYTHONUNBUFFERED="1", **extra)
    return env


@dataclass
class Server:
    url: str
    process: subprocess.Popen
    log: Path
    home: Path

    def stop(self) -> None:
        stop_group(self.process)


def stop_group(p: subprocess.Popen, grace_s: float = 10) -> None:
    """SIGTERM the process group we started, then SIGKILL what is left after ``grace_s``."""
    if p.poll() is None:
        try:
            os.killpg(p.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            p.wait(grace_s)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(p.pid, signal.SIGKILL)  # children that outlived their parent
    except ProcessLookupError:
        pass
    p.wait()


@contextmanager
def server(cmd: list[str], env: dict[str, str], health: str, url: str, home: Path) -> Iterator[Server]:
    log = home / "server.log"
    with open(log, "wb") as out:
        p = subprocess.Popen(cmd, env=env, cwd=home, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    s = Server(url=url, process=p, log=log, home=home)
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while True:
            if p.poll() is not None:
                pytest.fail(f"{cmd[0]} exited with {p.returncode}: {log.read_text()[-2000:]}")
            try:
                if httpx.get(health, timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"{' '.join(cmd[:3])} not healthy after {STARTUP_TIMEOUT_S}s: {log.read_text()[-2000:]}")
            time.sleep(0.5)
        yield s
    finally:
        s.stop()


def require_binary(name: str) -> str:
    path = BIN / name
    if not path.exists() and not shutil.which(name):
        pytest.skip(f"{name} is not installed")
    return str(path if path.exists() else shutil.which(name))


@contextmanager
def prefect_server_process() -> Iterator[Server]:
    home = Path(tempfile.mkdtemp(prefix="arpipe-prefect-server-"))
    port = free_port()
    env = base_env(PREFECT_HOME=str(home), PREFECT_UI_ENABLED="false",
                   PREFECT_SERVER_LOGGING_LEVEL="WARNING")
    cmd = [require_binary("prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)]
    try:
        with server(cmd, env, f"http://127.0.0.1:{port}/api/health", f"http://127.0.0.1:{port}/api", home) as s:
            yield s
    finally:
        shutil.rmtree(home, ignore_errors=True)


@contextmanager
def mlflow_server_process(root: Path) -> Iterator[Server]:
    root.mkdir(parents=True, exist_ok=True)
    port = free_port()
    cmd = [require_binary("mlflow"), "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
           "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
           "--serve-artifacts", "--artifacts-destination", str(root / "artifacts")]
    with server(cmd, base_env(), f"http://127.0.0.1:{port}/health", f"http://127.0.0.1:{port}", root) as s:
        yield s


@pytest.fixture(scope="session")
def prefect_server() -> Iterator[Server]:
    """One real Prefect API server for the session's operations tests."""
    with prefect_server_process() as s:
        yield s


@pytest.fixture
def mlflow_server(tmp_path) -> Iterator[Server]:
    with mlflow_server_process(tmp_path / "mlflow-server") as s:
        yield s


def client_env(prefect: Server, tmp_path: Path, **extra: str) -> dict[str, str]:
    """Environment for a CLI subprocess that talks to ``prefect``, with its own client PREFECT_HOME."""
    home = tmp_path / "prefect-client-home"
    home.mkdir(exist_ok=True)
    return base_env(PREFECT_API_URL=prefect.url, PREFECT_HOME=str(home), **extra)


def run_killing_during_rnn(cmd: list[str], env: dict[str, str], cwd: Path, work: Path, kill) -> tuple[int, str]:
    """Run ``cmd`` (an ``arpipe run``), call ``kill()`` as soon as its rnn stage starts building (its
    ``.partial-<key>`` exists), and wait for the run to end; (exit code, stderr)."""
    run = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 600
    while not list((work / "rnn").glob(".partial-*")):
        assert run.poll() is None, run.communicate()[1][-3000:]
        assert time.monotonic() < deadline, "the rnn stage did not start within 600 s"
        time.sleep(0.05)
    kill()
    _, stderr = run.communicate(timeout=600)
    return run.returncode, stderr
