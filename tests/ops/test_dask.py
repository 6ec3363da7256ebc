"""Scale-out on Dask: the same pipeline on a 2-worker cluster writes outputs with the same digests.

Three runs of one small config (several shards per split, several encode batches): the default
runner; ``runner=dask`` (a local cluster of 2 worker processes the flow starts and stops); and
``runner=dask://HOST:PORT`` against a scheduler and 2 workers started here with the ``dask`` CLI, the
way a team runs one. Every stage output digest must match, and the Prefect API must show one task
run per encode batch and per counting partition, all completed. An unreachable scheduler fails in seconds
with one line.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
from pathlib import Path

import pytest

from arcore.config import load_config
from arcore.shards.manifest import read_manifest
from flows.pipeline import pipeline
from tests.conftest import FAST, ROOT, write_corpus
from tests.ops.conftest import BIN, base_env, free_port, stop_group

SMALL = ["models=[ngram]", "registry.enabled=false", "shards.shard_tokens=2000", "shards.batch_documents=64",
         "ngram.partition_windows=4000",
         "ingest.valid_fraction=0.1", "ingest.test_fraction=0.1"]
DATA_STAGES = ("ingest", "tokenizer", "shards", "ngram", "evaluate")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return write_corpus(tmp_path_factory.mktemp("dask-corpus") / "a.txt", n_paragraphs=500)


def run(tmp: Path, corpus: Path, name: str, *sets: str) -> dict:
    cfg = load_config(overrides=[f"work_dir={tmp / name}", f"tracking.uri=sqlite:///{tmp / 'mlflow.db'}",
                                 f"ingest.inputs=[{corpus}]", *FAST, *SMALL, *sets])
    return pipeline(config=cfg)


def digests(summary: dict) -> dict[str, str]:
    out = {}
    for s in summary["stages"]:
        out[s["stage"]] = json.loads((Path(s["output_dir"]) / "manifest.json").read_text())["digest"]
    return out


def output_dir(summary: dict, stage: str) -> Path:
    return Path(next(s["output_dir"] for s in summary["stages"] if s["stage"] == stage))


def task_runs(flow_run_id: str) -> dict[str, str]:
    """Task run name -> state name, for one flow run, from the Prefect API."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
    return {r.name: r.state.name for r in runs}


def expected_pieces(summary: dict) -> tuple[int, int]:
    """(encode batches over all splits, counting partitions): what the fan-out must have submitted."""
    shards = output_dir(summary, "shards")
    batches = sum(math.ceil(read_manifest(shards, split).documents / 64) for split in ("train", "valid", "test"))
    ngram = json.loads((output_dir(summary, "ngram") / "manifest.json").read_text())
    return batches, ngram["records"]["count_partitions"]


def check_fanned_out(summary: dict) -> None:
    batches, partitions = expected_pieces(summary)
    assert batches >= 4 and partitions >= 2  # the config really splits the work
    runs = task_runs(summary["flow_run_id"])
    encode = {n: s for n, s in runs.items() if n.startswith("shards-encode-")}
    count = {n: s for n, s in runs.items() if n.startswith("ngram-count-")}
    assert sorted(encode) == [f"shards-encode-{i:05d}" for i in range(batches)]
    assert sorted(count) == [f"ngram-count-{i:05d}" for i in range(partitions)]
    assert set(encode.values()) == set(count.values()) == {"Completed"}


def test_local_cluster_and_existing_scheduler_match_the_default_runner(prefect_harness, tmp_path, corpus):
    local = run(tmp_path, corpus, "local")
    assert local["runner"] == "local"
    assert not [n for n in task_runs(local["flow_run_id"]) if n.startswith(("shards-encode", "ngram-count"))]

    cluster = run(tmp_path, corpus, "cluster", "runner=dask", "dask_workers=2")
    assert cluster["runner"] == "dask"
    assert digests(cluster) == digests(local)
    assert set(digests(local)) == set(DATA_STAGES)
    check_fanned_out(cluster)

    # A scheduler and two workers started the way a team starts them; the workers report to the same API.
    port = free_port()
    env = base_env(PREFECT_API_URL=prefect_harness, TOKENIZERS_PARALLELISM="false")
    sched = subprocess.Popen([str(BIN / "dask"), "scheduler", "--host", "127.0.0.1", "--port", str(port),
                              "--no-dashboard"], env=env, cwd=ROOT, start_new_session=True,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    workers = subprocess.Popen([str(BIN / "dask"), "worker", f"tcp://127.0.0.1:{port}", "--nworkers", "2",
                                "--nthreads", "1", "--no-dashboard"], env=env, cwd=ROOT, start_new_session=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        from distributed import Client

        with Client(f"tcp://127.0.0.1:{port}", timeout=60) as client:
            client.wait_for_workers(2, timeout=120)
        remote = run(tmp_path, corpus, "remote", f"runner=dask://127.0.0.1:{port}")
    finally:
        stop_group(workers)
        stop_group(sched)
    assert digests(remote) == digests(local)
    check_fanned_out(remote)


def run_cli(tmp_path: Path, harness: str, corpus: Path, runner: str) -> tuple[subprocess.CompletedProcess, float, list]:
    env = base_env(PREFECT_API_URL=harness, PREFECT_HOME=str(tmp_path / "prefect"))
    args = [f"--set=work_dir={tmp_path / 'work'}", f"--set=tracking.uri=sqlite:///{tmp_path / 'mlflow.db'}",
            f"--set=ingest.inputs=[{corpus}]", *(f"--set={s}" for s in FAST + SMALL)]
    t0 = time.monotonic()
    p = subprocess.run([sys.executable, "-m", "flows.cli", "run", "--runner", runner, *args],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    seconds = time.monotonic() - t0
    status = subprocess.run([sys.executable, "-m", "flows.cli", "status", "--json", *args], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=120)
    return p, seconds, json.loads(status.stdout)["stages"]


def test_unreachable_scheduler_is_one_line_and_fast(prefect_harness, tmp_path, corpus):
    port = free_port()  # nothing listens here
    p, seconds, status = run_cli(tmp_path, prefect_harness, corpus, f"dask://127.0.0.1:{port}")
    assert p.returncode == 1, p.stderr[-2000:]
    last = p.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and f"cannot reach the Dask scheduler at tcp://127.0.0.1:{port}" in last
    assert "Traceback" not in p.stderr
    assert seconds < 120  # bounded connect timeout, not distributed's minutes of retries
    # stages before the fan-out completed and stay reusable
    states = {r["stage"]: r["state"] for r in status}
    assert states["ingest"] == states["tokenizer"] == "complete" and states["shards"] == "missing"


def test_scheduler_without_workers_is_one_line(prefect_harness, tmp_path, corpus):
    port = free_port()
    sched = subprocess.Popen([str(BIN / "dask"), "scheduler", "--host", "127.0.0.1", "--port", str(port),
                              "--no-dashboard"], env=base_env(), cwd=tmp_path, start_new_session=True,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        from distributed import Client

        with Client(f"tcp://127.0.0.1:{port}", timeout=60):  # the scheduler is up
            pass
        p, _, status = run_cli(tmp_path, prefect_harness, corpus, f"dask://127.0.0.1:{port}")
    finally:
        stop_group(sched)
    assert p.returncode == 1, p.stderr[-2000:]
    assert p.stderr.strip().splitlines()[-1] == (
        f"error: the Dask scheduler at tcp://127.0.0.1:{port} has no workers; start some "
        f"(dask worker tcp://127.0.0.1:{port}) or run with --runner local")
    assert {r["stage"]: r["state"] for r in status}["shards"] == "missing"


def test_bad_runner_is_a_config_error(tmp_path):
    p = subprocess.run([sys.executable, "-m", "flows.cli", "run", "--runner", "dask://nowhere",
                        f"--set=work_dir={tmp_path / 'work'}"], cwd=ROOT, env=base_env(PREFECT_HOME=str(tmp_path)),
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 2
    assert p.stderr.strip() == ("error: invalid config: runner = 'dask://nowhere': 'dask://nowhere' is not a "
                                "runner; use local, dask, or dask://HOST:PORT")


def test_sigterm_during_fan_out_stops_the_cluster_and_commits_nothing(prefect_harness, tmp_path, corpus):
    """SIGTERM while shard batches are on the workers: the run ends, its cluster's worker processes
    are gone, the shards stage is not marked complete, and the MLflow runs are KILLED."""
    import os
    import signal

    from mlflow.tracking import MlflowClient

    env = base_env(PREFECT_API_URL=prefect_harness, PREFECT_HOME=str(tmp_path / "prefect"))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    args = [f"--set=work_dir={tmp_path / 'work'}", f"--set=tracking.uri={uri}", f"--set=ingest.inputs=[{corpus}]",
            *(f"--set={s}" for s in FAST + SMALL), "--set=shards.batch_documents=2", "--set=shards.shard_tokens=300"]
    p = subprocess.Popen([sys.executable, "-m", "flows.cli", "run", "--runner", "dask", *args], cwd=ROOT, env=env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 240
        while not list((tmp_path / "work" / "shards").glob(".partial-*/train/train-00002.parquet")):
            assert p.poll() is None, f"arpipe exited ({p.returncode}) early: {p.stderr.read()[-2000:]}"
            assert time.monotonic() < deadline, "the shards stage never wrote a shard"
            time.sleep(0.2)
        p.send_signal(signal.SIGTERM)
        _, err = p.communicate(timeout=120)
        assert p.returncode == 143, err[-2000:]  # Prefect ends the run; arpipe exits 143 with an error: line (bf37271)
        assert "Crashed('Execution was aborted by a termination signal.')" in err
        for _ in range(100):  # the nannies and workers leave with the flow process
            try:
                os.killpg(p.pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.2)
        else:
            pytest.fail("processes of the Dask cluster outlived the run")
    finally:
        stop_group(p)
    assert not [d for d in (tmp_path / "work" / "shards").iterdir() if not d.name.startswith(".")]
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("arpipe").experiment_id])
    assert {r.data.tags.get("arpipe.stage", "pipeline"): r.info.status for r in runs}["shards"] == "KILLED", err[-3000:]
    assert {r.info.status for r in runs} <= {"KILLED", "FINISHED"}, err[-2000:]
