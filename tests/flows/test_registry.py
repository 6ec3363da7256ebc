"""Model registry and promotion against a real MLflow SQLite store, through the real flow."""

from __future__ import annotations

import pytest
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from arcore.config import load_config
from arcore.errors import GateFailed
from flows.cli import app
from flows.pipeline import pipeline
from tests.conftest import FAST, write_corpus


@pytest.fixture
def cfg_for(tmp_path, mlflow_uri):
    corpus = write_corpus(tmp_path / "corpus.txt", n_paragraphs=400)

    def make(*sets):
        return load_config(overrides=[
            f"work_dir={tmp_path / 'work'}", f"tracking.uri={mlflow_uri}", f"ingest.inputs=[{corpus}]",
            "ingest.valid_fraction=0.1", "ingest.test_fraction=0.1", *FAST, "registry.families=[ngram]", *sets,
        ])

    return make


def test_promotion_rules(prefect_harness, cfg_for, mlflow_uri):
    client = MlflowClient(mlflow_uri)
    first = pipeline(config=cfg_for())
    [d] = first["registry"]
    assert (d["model"], d["version"], d["promoted"], d["champion_valid_bpb"]) == ("arpipe-ngram", "1", True, None)
    champion = client.get_model_version_by_alias("arpipe-ngram", "champion")
    assert str(champion.version) == "1" and champion.run_id == next(
        s["mlflow_run_id"] for s in first["stages"] if s["stage"] == "ngram")
    assert champion.tags["arpipe.pipeline_run_id"] == first["mlflow_run_id"]
    assert {"arpipe.data_digest", "arpipe.tokenizer_digest", "arpipe.valid_bits_per_byte"} <= set(champion.tags)

    # identical rerun: everything cached, nothing registered, the alias stays
    again = pipeline(config=cfg_for())
    assert again["registry"] == []
    assert str(client.get_model_version_by_alias("arpipe-ngram", "champion").version) == "1"

    # a worse model is registered but not promoted, and says why
    worse = pipeline(config=cfg_for("ngram.order=1"))
    [d] = worse["registry"]
    assert d["version"] == "2" and not d["promoted"] and d["candidate_valid_bpb"] > d["champion_valid_bpb"]
    v2 = client.get_model_version("arpipe-ngram", "2")
    assert v2.tags["arpipe.promoted"] == "false" and "does not beat the champion" in v2.tags["arpipe.not_promoted_reason"]
    assert str(client.get_model_version_by_alias("arpipe-ngram", "champion").version) == "1"

    # another config: promoted exactly when it beats the champion; a huge margin blocks even a better one
    other = pipeline(config=cfg_for("ngram.order=3"))["registry"][0]
    wins = other["candidate_valid_bpb"] < other["champion_valid_bpb"]
    assert other["promoted"] == wins
    assert str(client.get_model_version_by_alias("arpipe-ngram", "champion").version) == ("3" if wins else "1")
    blocked = pipeline(config=cfg_for("ngram.order=4", "registry.margin=5"))["registry"][0]
    assert not blocked["promoted"] and "by the margin 5" in blocked["reason"]

    # the champion serves generation by its registry URI
    r = CliRunner().invoke(app, ["generate", "--model", "models:/arpipe-ngram@champion", "--prompt", "The cat",
                                 "--strategy", "greedy", "--max-tokens", "8"], env={"MLFLOW_TRACKING_URI": mlflow_uri})
    assert r.exit_code == 0 and r.output.startswith("The cat"), r.output


def test_regression_beyond_the_gate_fails_the_run(prefect_harness, cfg_for, mlflow_uri):
    pipeline(config=cfg_for())
    with pytest.raises(GateFailed, match=r"evaluation gate failed: arpipe-ngram: valid bits per byte .* worse than "
                                         r"the champion .* by more than the gate 0.01"):
        pipeline(config=cfg_for("ngram.order=1", "registry.gate=0.01"))
    client = MlflowClient(mlflow_uri)
    exp = client.get_experiment_by_name("arpipe")
    [last] = client.search_runs([exp.experiment_id], "tags.`arpipe.kind` = 'pipeline'",
                                order_by=["start_time DESC"], max_results=1)
    assert last.info.status == "FAILED" and last.data.tags["arpipe.gate"] == "failed"
    assert client.get_model_version("arpipe-ngram", "2").tags["arpipe.promoted"] == "false"
