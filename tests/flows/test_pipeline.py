"""The pipeline flow end to end on the real Prefect engine and a real MLflow SQLite store.

Shows the caching contract: an unchanged rerun recomputes nothing; changing one stage's setting
recomputes that stage and its downstream only; changing an input file reruns from ingest.
"""

from __future__ import annotations

import time

import pytest
from mlflow.tracking import MlflowClient

from arcore.config import load_config
from flows.pipeline import pipeline
from flows.stages import default_stage_names
from tasks.tracking import TrackingUnavailable
from tests.conftest import FAST, write_corpus

DEFAULT_STAGES = default_stage_names()  # the stages a default config runs


@pytest.fixture
def cfg_for(tmp_path, mlflow_uri):
    corpus = write_corpus(tmp_path / "corpus" / "a.txt")

    def make(*sets):
        return load_config(overrides=[
            f"work_dir={tmp_path / 'work'}", f"tracking.uri={mlflow_uri}", f"ingest.inputs=[{corpus}]",
            "ingest.valid_fraction=0.1", "ingest.test_fraction=0.1", *FAST, *sets,
        ])

    make.corpus = corpus
    return make


def states(summary) -> dict[str, str]:
    return {s["stage"]: s["state"] for s in summary["stages"]}


def runs_of(uri: str, parent_id: str):
    client = MlflowClient(uri)
    parent = client.get_run(parent_id)
    children = client.search_runs([parent.info.experiment_id], f"tags.mlflow.parentRunId = '{parent_id}'")
    return client, parent, {c.data.tags["arpipe.stage"]: c for c in children}


def test_run_rerun_cached_and_selective(prefect_harness, cfg_for, mlflow_uri):
    cfg = cfg_for()
    first = pipeline(config=cfg)
    assert states(first) == {name: "completed" for name in DEFAULT_STAGES}
    client, parent, children = runs_of(mlflow_uri, first["mlflow_run_id"])
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["prefect.flow_run_id"] == first["flow_run_id"]
    assert parent.data.params["ingest.valid_fraction"] == "0.1"
    assert {a.path for a in client.list_artifacts(parent.info.run_id)} == {"config.yaml", "summary.md", "report.md",
                                                                         "report.html"}
    assert parent.data.tags["arpipe.gate"] == "passed"
    assert set(children) == set(DEFAULT_STAGES)
    ingest_run = children["ingest"]
    assert ingest_run.info.status == "FINISHED" and ingest_run.data.tags["cached"] == "false"
    assert ingest_run.data.params["unit"] == "paragraph"
    assert ingest_run.data.metrics["documents_train"] > 200
    assert {"manifest.json", "report.json"} <= {a.path for a in client.list_artifacts(ingest_run.info.run_id)}

    evaluate_run = children["evaluate"]
    assert {"comparison.json", "bits_per_byte.png", "samples.md", "evaluation.json"} <= {
        a.path for a in client.list_artifacts(evaluate_run.info.run_id)}
    bpb = {k.split(".")[0]: v for k, v in evaluate_run.data.metrics.items() if k.endswith(".test.bits_per_byte")}
    assert bpb["ngram-kneser-ney"] < bpb["histogram"] < bpb["ngram-laplace"]

    rnn_run = children["rnn"]
    steps = int(rnn_run.data.metrics["steps"])
    assert len(client.get_metric_history(rnn_run.info.run_id, "loss")) == steps > 0
    assert len(client.get_metric_history(rnn_run.info.run_id, "epoch.valid_loss")) == 1
    assert {"history.json", "gradient_norms.png", "manifest.json"} <= {
        a.path for a in client.list_artifacts(rnn_run.info.run_id)}
    assert {"model/config.json", "model/model.pt"} <= {a.path for a in client.list_artifacts(rnn_run.info.run_id, "model")}
    model_id = rnn_run.data.tags["arpipe.model.rnn"].removeprefix("models:/")  # a LoggedModel of the run
    assert client.get_logged_model(model_id).source_run_id == rnn_run.info.run_id

    second = pipeline(config=cfg)
    assert states(second) == {name: "cached" for name in DEFAULT_STAGES}
    assert [s["output_dir"] for s in second["stages"]] == [s["output_dir"] for s in first["stages"]]
    _, parent2, children2 = runs_of(mlflow_uri, second["mlflow_run_id"])
    assert children2["ingest"].data.tags["cached"] == "true"
    assert children2["ingest"].data.tags["cached_from_run_id"] == ingest_run.info.run_id

    # one tokenizer setting changed: tokenizer and everything downstream recompute, ingest does not
    changed = pipeline(config=cfg_for("tokenizer.vocab_size=300"))
    after = DEFAULT_STAGES[DEFAULT_STAGES.index("tokenizer"):]
    assert states(changed) == {n: "cached" if n not in after else "completed" for n in DEFAULT_STAGES}
    assert changed["stages"][0]["output_dir"] == first["stages"][0]["output_dir"]
    assert changed["stages"][1]["output_dir"] != first["stages"][1]["output_dir"]

    # input content changed: reruns everything from ingest
    cfg_for.corpus.write_text(cfg_for.corpus.read_text() + "\nA brand new paragraph.\n")
    edited = pipeline(config=cfg)
    assert states(edited) == {name: "completed" for name in DEFAULT_STAGES}


def test_only_and_rerun_from_force_recompute(prefect_harness, cfg_for, mlflow_uri):
    cfg = cfg_for()
    first = pipeline(config=cfg)
    only = pipeline(config=cfg, only="tokenizer")
    assert states(only) == {"tokenizer": "completed"}
    assert only["stages"][0]["output_dir"] == first["stages"][1]["output_dir"]
    _, parent, _ = runs_of(mlflow_uri, only["mlflow_run_id"])
    assert parent.data.tags["arpipe.mode"] == "only:tokenizer"
    # a deterministic stage recomputed gives the same digest: downstream stays cached
    again = pipeline(config=cfg)
    assert states(again) == {name: "cached" for name in DEFAULT_STAGES}
    rerun = pipeline(config=cfg, rerun_from="tokenizer")
    assert states(rerun) == {n: "cached" if n == "ingest" else "completed" for n in DEFAULT_STAGES}


def test_stage_on_latest_outputs_of_another_config_says_so(prefect_harness, cfg_for, caplog):
    pipeline(config=cfg_for())
    caplog.clear()
    other = pipeline(config=cfg_for("tokenizer.vocab_size=300"), only="shards")
    assert states(other) == {"shards": "completed"}
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING" and "latest output" in r.getMessage()]
    assert len(warned) == 1 and warned[0].startswith("tokenizer: using its latest output")
    assert "vocab_size: 400 -> 300" in warned[0] and "`arpipe run`" in warned[0]
    caplog.clear()
    pipeline(config=cfg_for(), only="shards")  # the latest tokenizer is this config's: nothing to say
    assert not [r for r in caplog.records if "latest output" in r.getMessage()]


def test_stage_only_needs_upstream_output(prefect_harness, cfg_for):
    from arcore.errors import StageError

    with pytest.raises(StageError, match="no complete output of stage 'ingest'.*run `arpipe run` first"):
        pipeline(config=cfg_for(), only="tokenizer")


def test_unreachable_tracking_store_fails_fast_before_compute(prefect_harness, cfg_for, tmp_path):
    cfg = cfg_for("tracking.uri=http://127.0.0.1:9", "tracking.request_max_retries=0",
                  "tracking.request_timeout_s=2")
    t0 = time.monotonic()
    with pytest.raises(TrackingUnavailable, match=r"MLflow tracking store http://127.0.0.1:9 is not reachable"):
        pipeline(config=cfg)
    assert time.monotonic() - t0 < 30
    assert not (tmp_path / "work" / "ingest").exists()


def test_failing_stage_marks_runs_failed(prefect_harness, cfg_for, mlflow_uri, tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"ok\n\xff\n")
    cfg = cfg_for(f"ingest.inputs=[{bad}]", "ingest.unit=line")
    from arcore.errors import InputError

    with pytest.raises(InputError, match="invalid UTF-8 at byte offset 3"):
        pipeline(config=cfg)
    client = MlflowClient(mlflow_uri)
    runs = client.search_runs([client.get_experiment_by_name("arpipe").experiment_id])
    assert runs and {r.info.status for r in runs} == {"FAILED"}
    assert not any(p.name != ".lock-" and not p.name.startswith(".") for p in (tmp_path / "work" / "ingest").iterdir())
