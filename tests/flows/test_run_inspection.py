"""What a user inspecting runs sees (issue 14): the parent run's headline, epoch figures on the step axis,
the experiment's kind, Prefect task runs by stage. One pipeline run and one all-cached rerun, on the real
Prefect engine and a real MLflow SQLite store, shared by the tests of this module.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from flows.pipeline import pipeline
from tests.conftest import small_run_config, write_corpus


@pytest.fixture(scope="module")
def runs(prefect_harness, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("inspection")
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    corpus = write_corpus(tmp / "corpus.txt")
    cfg = small_run_config(tmp, corpus, "rnn.epochs=2", "registry.families=[ngram]", "tracking.tags.team=lm")
    first = pipeline(config=cfg)
    second = pipeline(config=cfg)
    return MlflowClient(uri), first, second


def stage(summary: dict, name: str) -> dict:
    return next(s for s in summary["stages"] if s["stage"] == name)


def test_parent_run_carries_the_headline(runs):
    client, first, second = runs
    parent = client.get_run(first["mlflow_run_id"])
    metrics, tags = parent.data.metrics, parent.data.tags
    evaluated = {k.split(".")[0] for k in stage(first, "evaluate")["metrics"] if k.endswith(".test.bits_per_byte")}
    assert {"rnn", "ngram-kneser-ney", "histogram", "infinigram"} <= evaluated
    for model in evaluated:
        for figure in ("test.bits_per_byte", "valid.bits_per_byte", "test.perplexity_per_word",
                       "test.perplexity_per_token"):
            assert metrics[f"{model}.{figure}"] == stage(first, "evaluate")["metrics"][f"{model}.{figure}"]
    rnn = stage(first, "rnn")
    assert metrics["rnn.train_seconds"] == rnn["metrics"]["train_seconds"] > 0

    # the parameter count the stage reports is the trained model's, counted again from its saved weights
    from arcore.rnn.stage import load_rnn
    from arcore.tokenize.store import load_tokenizer

    lm = load_rnn(rnn["output_dir"], load_tokenizer(stage(first, "tokenizer")["output_dir"]))
    assert metrics["rnn.parameters"] == sum(p.numel() for p in lm.model.parameters()) > 0
    for s in first["stages"]:
        assert metrics[f"stage.{s['stage']}.seconds"] == s["seconds"]
    for split in ("train", "valid", "test"):
        assert metrics[f"data.{split}.tokens"] == stage(first, "shards")["metrics"][f"{split}_tokens"] > 0
        assert metrics[f"data.{split}.documents"] == stage(first, "ingest")["metrics"][f"documents_{split}"] > 0
    ingest = json.loads((Path(stage(first, "ingest")["output_dir"]) / "manifest.json").read_text())
    registered = client.get_model_version("arpipe-ngram", first["registry"][0]["version"])
    assert tags["arpipe.data_digest"] == ingest["digest"] == registered.tags["arpipe.data_digest"]
    assert tags["mlflow.source.name"] == "arpipe" and tags["mlflow.source.type"] == "LOCAL"
    assert tags["mlflow.user"] and tags["team"] == "lm"
    assert {a.path for a in client.list_artifacts(parent.info.run_id)} == {"config.yaml", "summary.md", "report.md",
                                                                         "report.html"}

    # the cached rerun: same names and figures, and its summary.md although it registered nothing
    assert second["registry"] == []
    again = client.get_run(second["mlflow_run_id"])
    assert {a.path for a in client.list_artifacts(again.info.run_id)} == {"config.yaml", "summary.md", "report.md",
                                                                        "report.html"}
    assert set(again.data.metrics) == set(metrics)
    assert again.data.metrics["rnn.test.bits_per_byte"] == metrics["rnn.test.bits_per_byte"]
    assert again.data.tags["arpipe.data_digest"] == tags["arpipe.data_digest"]


def test_epoch_figures_sit_on_the_training_step_axis(runs):
    client, first, _ = runs
    run_id = stage(first, "rnn")["mlflow_run_id"]
    loss = sorted(m.step for m in client.get_metric_history(run_id, "loss"))
    valid = sorted((m.step, m.value) for m in client.get_metric_history(run_id, "epoch.valid_loss"))
    epochs = sorted((m.step, m.value) for m in client.get_metric_history(run_id, "epoch"))
    steps = int(stage(first, "rnn")["metrics"]["steps"])
    assert loss == list(range(1, steps + 1))
    # two epochs of equal length: each epoch's figures at the global step that ended it
    assert [s for s, _ in valid] == [s for s, _ in epochs] == [steps // 2, steps]
    assert [e for _, e in epochs] == [0.0, 1.0]
    history = json.loads((Path(stage(first, "rnn")["output_dir"]) / "history.json").read_text())
    assert [v for _, v in valid] == pytest.approx([h["valid_loss"] for h in history])


def test_the_experiment_is_a_model_training_experiment(runs, tmp_path):
    client, first, _ = runs
    experiment = client.get_experiment(client.get_run(first["mlflow_run_id"]).info.experiment_id)
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"

    # an experiment made before: tagged when it has no kind, left alone when a user chose one
    from arcore.config import TrackingConfig
    from tasks.tracking import Tracker

    other = MlflowClient(f"sqlite:///{tmp_path / 'old.db'}")
    plain, chosen = other.create_experiment("plain"), other.create_experiment("chosen")
    other.set_experiment_tag(chosen, "mlflow.experimentKind", "genai_development")
    for name in ("plain", "chosen"):
        Tracker(TrackingConfig(uri=f"sqlite:///{tmp_path / 'old.db'}", experiment=name)).check()
    assert other.get_experiment(plain).tags["mlflow.experimentKind"] == "custom_model_development"
    assert other.get_experiment(chosen).tags["mlflow.experimentKind"] == "genai_development"


def test_prefect_task_runs_are_named_tagged_and_cached_from_the_manifest(runs):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    _, first, second = runs

    def task_runs(summary):
        with get_client(sync_client=True) as client:
            found = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[summary["flow_run_id"]])))
        return {t.name: t for t in found}

    for summary, state in ((first, "Completed"), (second, "Cached")):
        by_name = task_runs(summary)
        for s in summary["stages"]:
            run = by_name[f"{s['stage']} {Path(s['output_dir']).name}"]  # the key names the output dir
            assert s["stage"] in run.tags
            assert (run.state.type.value, run.state.name) == ("COMPLETED", state), s["stage"]
