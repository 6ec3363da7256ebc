"""The ``arpipe`` command as a user runs it: a real process against the session's Prefect server."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from flows.stages import STAGE_NAMES, default_stage_names
from tests.conftest import FAST, write_corpus

DEFAULT_STAGES = default_stage_names()  # the stages a default config runs

ARPIPE = [sys.executable, "-m", "flows.cli"]
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def cli(prefect_harness, tmp_path, mlflow_uri):
    corpus = write_corpus(tmp_path / "corpus.txt")
    env = {**os.environ, "PREFECT_API_URL": prefect_harness}
    base = [f"--set=work_dir={tmp_path / 'work'}", f"--set=tracking.uri={mlflow_uri}", f"--set=ingest.inputs=[{corpus}]",
            *(f"--set={s}" for s in FAST)]

    def run(*args, check_rc=0):
        cmd, rest = args[0], list(args[1:])
        p = subprocess.run([*ARPIPE, cmd, *base, *rest], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
        if check_rc is not None:
            assert p.returncode == check_rc, p.stderr[-3000:]
        return p

    run.env, run.base, run.tmp = env, base, tmp_path
    return run


def test_run_json_then_cached_then_stage_and_status(cli):
    first = json.loads(cli("run", "--json").stdout)
    assert [s["state"] for s in first["stages"]] == ["completed"] * len(DEFAULT_STAGES)
    assert first["mlflow_run_id"] and first["flow_run_id"]
    for s in first["stages"]:
        assert set(s) >= {"stage", "state", "seconds", "output_dir", "metrics"}
        assert Path(s["output_dir"], "manifest.json").is_file()
    second = json.loads(cli("run", "--json").stdout)
    assert [s["state"] for s in second["stages"]] == ["cached"] * len(DEFAULT_STAGES)
    only = json.loads(cli("stage", "ingest", "--json").stdout)
    assert [(s["stage"], s["state"]) for s in only["stages"]] == [("ingest", "completed")]
    status = json.loads(cli("status", "--json").stdout)
    assert {r["stage"]: r["state"] for r in status["stages"]} == {
        **{name: "complete" for name in DEFAULT_STAGES}, "transformer": "off"}
    changed = json.loads(cli("status", "--json", "--set", "ingest.unit=line").stdout)
    assert changed["stages"][0]["state"] == "missing"
    text = cli("run").stdout
    assert "ingest" in text and "cached" in text and "MLflow run" in text


@pytest.mark.parametrize(
    "args, rc, message",
    [
        (("run", "--set", "ingest.valid_fraction=1.3"), 2, "error: invalid config: ingest.valid_fraction = 1.3"),
        (("run", "--set", "ingest.bogus=1"), 2, "error: invalid config: ingest.bogus: unknown key"),
        (("stage", "nope"), 2, f"error: unknown stage 'nope'; stages are: {', '.join(STAGE_NAMES)}"),
        (("run", "--from", "nope"), 2, "error: unknown stage 'nope'"),
        (("run", "--set", "ingest.inputs=[/no/such/file.txt]"), 1, "error: input not found: '/no/such/file.txt'"),
    ],
)
def test_failures_are_one_line_with_exit_code(cli, args, rc, message):
    p = cli(*args, check_rc=rc)
    assert p.stderr.strip().splitlines()[-1].startswith(message)
    assert "Traceback" not in p.stderr


def test_bad_input_file_no_traceback(cli):
    bad = cli.tmp / "bad.txt"
    bad.write_bytes(b"fine\n\xc3\x28 broken\n")
    p = cli("run", "--set", f"ingest.inputs=[{bad}]", check_rc=1)
    assert "Traceback" not in p.stderr
    assert p.stderr.strip().splitlines()[-1] == (
        f"error: {bad}:2: invalid UTF-8 at byte offset 5 (byte 0xc3); "
        "fix the file or set ingest.encoding_errors=replace"
    )


def test_run_json_on_failure_says_what_finished(cli):
    # the shards stage cannot make its directory: ingest and tokenizer finish, shards fails
    (cli.tmp / "work").mkdir()
    (cli.tmp / "work" / "shards").write_text("not a directory\n")
    p = cli("run", "--json", check_rc=1)
    summary = json.loads(p.stdout)
    assert [(s["stage"], s["state"]) for s in summary["stages"]] == [
        ("ingest", "completed"), ("tokenizer", "completed"), ("shards", "failed")]
    error = p.stderr.strip().splitlines()[-1]
    assert error.startswith("error: ") and summary["error"] == error.removeprefix("error: ")
    assert summary["exit_code"] == 1 and summary["mlflow_run_id"] and summary["flow_run_id"]
    # a run that fails before any stage (the store is down) still answers in JSON
    down = cli("run", "--json", "--set", "tracking.uri=http://127.0.0.1:9", "--set",
               "tracking.request_max_retries=0", check_rc=1)
    assert json.loads(down.stdout)["stages"] == [] and "not reachable" in json.loads(down.stdout)["error"]


def test_sigterm_marks_runs_killed(cli, mlflow_uri):
    big = cli.tmp / "big.txt"
    with open(big, "w") as f:
        for start in range(0, 3_000_000, 100_000):
            f.write("".join(f"line number {i}\n" for i in range(start, start + 100_000)))
    p = subprocess.Popen([*ARPIPE, "run", *cli.base, f"--set=ingest.inputs=[{big}]", "--set=ingest.unit=line"],
                         env=cli.env, cwd=cli.tmp, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    client = MlflowClient(mlflow_uri)
    deadline = time.monotonic() + 300
    stage_run = None
    while time.monotonic() < deadline and stage_run is None:
        time.sleep(0.5)
        if p.poll() is not None:
            pytest.fail(f"arpipe exited ({p.returncode}) before ingest started: {p.stderr.read()[-2000:]}")
        try:
            exp = client.get_experiment_by_name("arpipe")
            runs = client.search_runs([exp.experiment_id], "tags.`arpipe.stage` = 'ingest'") if exp else []
        except Exception:  # the store is being created by the child process
            runs = []
        stage_run = runs[0] if runs else None
    if stage_run is None:
        p.kill()
        pytest.fail(f"ingest never started: {p.communicate()[1][-2000:]}")
    time.sleep(1.0)
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 143, err[-2000:]
    assert err.strip().splitlines()[-1] == "error: terminated (SIGTERM); runs in progress were marked KILLED"
    exp = client.get_experiment_by_name("arpipe")
    runs = client.search_runs([exp.experiment_id])
    assert {r.info.status for r in runs} == {"KILLED"}, err[-2000:]
    work = cli.tmp / "work" / "ingest"
    assert not [d for d in work.iterdir() if not d.name.startswith(".")]
