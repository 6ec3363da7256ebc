"""``arpipe serve --cron``: the flow served against a real Prefect server, run three times from its
deployment as the scheduler would (an unchanged input folder gives an all-cached run, a new file in it
retrains from ingest), then stopped; and its up-front refusals."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from prefect.client.orchestration import SyncPrefectClient

from flows.stages import default_stage_names
from tests.conftest import write_corpus
from tests.ops.conftest import base_env, client_env, stop_group

DEFAULT_STAGES = default_stage_names()  # the stages a default config runs

HARNESS = ("import typer\nfrom flows.cli_ops import gc_command, serve_command\n"
           "app = typer.Typer(pretty_exceptions_enable=False)\n"
           "app.command('serve')(serve_command)\napp.command('gc')(gc_command)\napp()\n")


def ops_cli() -> list[str]:
    """``arpipe`` itself once ``serve`` is registered on it, else the same functions on a bare app."""
    from flows.cli import app

    names = {c.name or getattr(c.callback, "__name__", "") for c in app.registered_commands}
    return [sys.executable, "-m", "flows.cli"] if "serve" in names else [sys.executable, "-c", HARNESS]


def wait_for(predicate, timeout_s: float, what: str, proc: subprocess.Popen | None = None, log: Path | None = None):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"serve exited ({proc.returncode}) while waiting for {what}: {log.read_text()[-3000:]}")
        value = predicate()
        if value:
            return value
        time.sleep(1)
    pytest.fail(f"timed out after {timeout_s}s waiting for {what}" + (f": {log.read_text()[-3000:]}" if log else ""))


def records(work: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((work / "runs").glob("*.json"))]


def test_served_runs_are_cached_until_the_input_folder_changes(prefect_server, tmp_path):
    corpus_dir = tmp_path / "corpus"
    write_corpus(corpus_dir / "a.txt", n_paragraphs=80)
    work = tmp_path / "work"
    sets = [f"--set=work_dir={work}", f"--set=tracking.uri=sqlite:///{tmp_path / 'mlflow.db'}",
            f"--set=ingest.inputs=[{corpus_dir}]", "--set=ingest.valid_fraction=0.1",
            "--set=ingest.test_fraction=0.1", "--set=ngram.order=2"]
    env = client_env(prefect_server, tmp_path, PREFECT_RUNNER_POLL_FREQUENCY="1")
    log = tmp_path / "serve.log"
    with open(log, "w") as out:
        serve = subprocess.Popen([*ops_cli(), "serve", "--cron", "0 3 * * *", "--name", "nightly-test", *sets],
                                 env=env, cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        with SyncPrefectClient(prefect_server.url) as client:
            def deployment():
                try:
                    return client.read_deployment_by_name("arpipe/nightly-test")
                except Exception:  # not registered yet
                    return None

            dep = wait_for(deployment, 120, "the served deployment", serve, log)
            assert [s.schedule.cron for s in dep.schedules] == ["0 3 * * *"]
            assert dep.parameters["config"]["work_dir"] == str(work)
            assert dep.parameters["config"]["ngram"]["order"] == 2

            def run_now() -> dict:
                run = client.create_flow_run_from_deployment(dep.id)
                state = wait_for(lambda: (s := client.read_flow_run(run.id).state).is_final() and s, 180,
                                 "the flow run", serve, log)
                assert state.is_completed(), (state, log.read_text()[-3000:])
                rec = [r for r in records(work) if r["flow_run_id"] == str(run.id)]
                assert len(rec) == 1
                return {name: s["state"] for name, s in rec[0]["stages"].items()}

            assert run_now() == {name: "completed" for name in DEFAULT_STAGES}
            assert run_now() == {name: "cached" for name in DEFAULT_STAGES}  # same folder: nothing to do
            write_corpus(corpus_dir / "b.txt", n_paragraphs=20, seed=1)
            assert run_now()["ingest"] == "completed"  # a new file: new ingest digest, retrain

            serve.send_signal(signal.SIGINT)
            serve.wait(60)
            assert serve.returncode is not None
            # Prefect pauses a served deployment when the serving process stops: no runs pile up
            assert client.read_deployment(dep.id).paused is True
    finally:
        stop_group(serve)


@pytest.mark.parametrize("cron, env_api, rc, message", [
    ("0 25 * * *", True, 2, "error: --cron '0 25 * * *' is not a valid cron expression"),
    ("0 3 * * *", False, 1, "error: serving on a schedule needs a Prefect server"),
])
def test_serve_refuses_up_front(prefect_server, tmp_path, cron, env_api, rc, message):
    env = client_env(prefect_server, tmp_path) if env_api else base_env(PREFECT_HOME=str(tmp_path / "home"))
    p = subprocess.run([*ops_cli(), "serve", "--cron", cron, f"--set=work_dir={tmp_path / 'work'}"],
                       env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert p.returncode == rc, p.stderr[-2000:]
    assert p.stderr.strip().splitlines()[-1].startswith(message)
    assert "Traceback" not in p.stderr
