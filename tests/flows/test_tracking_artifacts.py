"""Where a run's MLflow artifacts go, and that a cached rerun uploads none of its stages' artifacts again
(issue 14, item 4). Real pipeline runs, real SQLite store, real artifact folders."""

from __future__ import annotations

from pathlib import Path

from mlflow.tracking import MlflowClient

from arcore.config import load_config
from flows.pipeline import pipeline
from tests.conftest import FAST, write_corpus


def _files(root: Path) -> set[Path]:
    return {p.relative_to(root) for p in root.rglob("*") if p.is_file()} if root.is_dir() else set()


def _stage_runs(client: MlflowClient, parent: str) -> dict[str, object]:
    exp = client.get_run(parent).info.experiment_id
    runs = client.search_runs([exp], f"tags.`mlflow.parentRunId` = '{parent}'")
    return {r.data.tags["arpipe.stage"]: r for r in runs}


def test_artifacts_beside_the_store_and_a_cached_rerun_uploads_none(prefect_harness, tmp_path, monkeypatch):
    store = tmp_path / "store"
    store.mkdir()
    uri = f"sqlite:///{store / 'mlflow.db'}"
    cwd = tmp_path / "elsewhere"  # the process runs somewhere else than the store, as a test or cron job does
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    corpus = write_corpus(tmp_path / "corpus" / "a.txt", n_paragraphs=120)
    cfg = load_config(overrides=[f"work_dir={tmp_path / 'work'}", f"tracking.uri={uri}", f"ingest.inputs=[{corpus}]",
                                 "ingest.valid_fraction=0.1", "ingest.test_fraction=0.1", "ngram.order=3", *FAST])

    first = pipeline(config=cfg)
    assert not (cwd / "mlruns").exists()  # never the current directory
    artifacts = store / "mlruns"
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(cfg.tracking.experiment)
    assert exp.artifact_location == artifacts.as_uri()
    before = _files(artifacts)
    first_runs = _stage_runs(client, first["mlflow_run_id"])
    for stage, run in first_runs.items():
        assert run.data.tags["arpipe.artifacts_logged"] == "true", stage
        assert any(a.path == "manifest.json" for a in client.list_artifacts(run.info.run_id)), stage

    second = pipeline(config=cfg)
    assert {s["state"] for s in second["stages"]} == {"cached"}
    added = _files(artifacts) - before
    parent = second["mlflow_run_id"]
    parent_dir = Path(client.get_run(parent).info.artifact_uri.removeprefix("file://"))
    assert all((artifacts / f).is_relative_to(parent_dir) for f in added), sorted(map(str, added))
    for stage, run in _stage_runs(client, parent).items():  # every stage links to the run that holds its files
        tags = run.data.tags
        assert tags["cached"] == "true" and "arpipe.artifacts_logged" not in tags, stage
        assert tags["arpipe.artifacts_run_id"] == first_runs[stage].info.run_id, stage
        assert client.list_artifacts(run.info.run_id) == [], stage


def test_a_file_over_max_artifact_mb_stays_in_the_output_and_the_run_names_it(tmp_path):
    from types import SimpleNamespace

    from arcore.config import TrackingConfig
    from tasks.tracking import Tracker

    out = tmp_path / "out"
    out.mkdir()
    (out / "manifest.json").write_text("{}")
    (out / "small.arpa").write_text("\\data\\\n")
    with open(out / "big.arpa", "wb") as f:  # 3 MiB
        f.truncate(3 << 20)
    tracker = Tracker(TrackingConfig(uri=f"sqlite:///{tmp_path / 'mlflow.db'}", max_artifact_mb=2))
    client = tracker.client
    run = client.create_run(client.create_experiment("t", artifact_location=(tmp_path / "mlruns").as_uri()))
    tracker._log_stage_artifacts(run.info.run_id, SimpleNamespace(output_dir=str(out),
                                                                  artifacts=("small.arpa", "big.arpa")))
    assert sorted(a.path for a in client.list_artifacts(run.info.run_id)) == ["manifest.json", "small.arpa"]
    tag = client.get_run(run.info.run_id).data.tags["arpipe.artifacts_skipped"]
    assert tag.startswith("big.arpa (over tracking.max_artifact_mb=2; in ") and str(out) in tag


def test_a_mixtures_size_for_max_logged_model_mb_counts_its_parts(tmp_path):
    """At 1 GB of text the evaluate stage's own output is a few KB, but the best mixture's bundle holds the
    9.5 GB n-gram model: the size limit must see the parts (it once filled the disk copying them)."""
    from flows.pipeline import shipped_dirs
    from flows.stages import get_stage
    from tasks.contract import StageRef

    refs = {name: StageRef(stage=name, key="k", path=str(tmp_path / name), digest="d")
            for name in ("tokenizer", "shards", "ngram", "rnn", "infinigram")}
    out = tmp_path / "out"
    assert shipped_dirs(get_stage("evaluate"), refs, out) == [out] + [tmp_path / n for n in ("ngram", "rnn", "infinigram")]
    ngram_refs = {k: refs[k] for k in ("tokenizer", "shards")}
    assert shipped_dirs(get_stage("ngram"), ngram_refs, out) == [out]
