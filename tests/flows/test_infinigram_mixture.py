"""The infinigram stage and evaluate's mixtures through the real flow: in the table, the chart and the report
with valid and test figures, decodable with every strategy (locally and from the registry), registered."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from arcore.config import load_config
from flows.cli import app
from flows.pipeline import pipeline
from tests.conftest import FAST, write_corpus

MIXTURES = ("mixture-rnn_ngram-kneser-ney", "mixture-rnn_infinigram", "mixture-rnn_ngram-kneser-ney_infinigram")
STRATEGIES = (["greedy"], ["sample"], ["top-k", "--k", "5"], ["top-p", "--p", "0.9"], ["beam", "--beam-width", "3"])


@pytest.fixture
def cfg_for(tmp_path, mlflow_uri):
    corpus = write_corpus(tmp_path / "corpus.txt", n_paragraphs=300)

    def make(*sets):
        return load_config(overrides=[
            f"work_dir={tmp_path / 'work'}", f"tracking.uri={mlflow_uri}", f"ingest.inputs=[{corpus}]",
            "ingest.valid_fraction=0.1", "ingest.test_fraction=0.1", *FAST,
            "registry.families=[infinigram, mixture]", *sets,
        ])

    return make


def test_infinigram_and_mixtures_end_to_end(prefect_harness, cfg_for, mlflow_uri, tmp_path):
    cfg = cfg_for()
    summary = pipeline(config=cfg)
    stages = {s["stage"]: s for s in summary["stages"]}
    assert stages["infinigram"]["state"] == "completed"
    assert 0 < stages["infinigram"]["metrics"]["valid_sparse_fraction"] < 1
    out = Path(stages["evaluate"]["output_dir"])
    results = json.loads((out / "evaluation.json").read_text())
    for name in ("infinigram", *MIXTURES):
        assert set(results[name]) == {"valid", "test"}
    table = {row["model"]: row for row in json.loads((out / "comparison.table.json").read_text())}
    assert {"infinigram", *MIXTURES} <= set(table)
    assert f"| {table['infinigram']['rank']} | infinigram |" in (out / "comparison.md").read_text()
    samples = json.loads((out / "samples.json").read_text())
    assert set(samples["mixture-rnn_infinigram"]) == {"greedy", "sample", "top-k", "top-p", "beam"}
    listed = json.loads((out / "mixtures.json").read_text())
    assert set(listed["mixtures"]) == set(MIXTURES)
    best = listed["best"]
    assert listed["mixtures"][best]["figures"]["valid"]["bits_per_byte"] == min(
        m["figures"]["valid"]["bits_per_byte"] for m in listed["mixtures"].values())
    for entry in listed["mixtures"].values():
        assert sum(entry["weights"]) == pytest.approx(1.0)
    # a mixture fit on valid is at least as good there as its best part (EM starts from a mix and climbs)
    rnn_kn = listed["mixtures"]["mixture-rnn_ngram-kneser-ney"]["figures"]["valid"]["bits_per_byte"]
    assert rnn_kn <= min(results["rnn"]["valid"]["bits_per_byte"],
                         results["ngram-kneser-ney"]["valid"]["bits_per_byte"]) + 1e-9

    registered = {d["model"]: d for d in summary["registry"]}
    assert set(registered) == {"arpipe-infinigram", "arpipe-mixture"}
    assert registered["arpipe-mixture"]["candidate_valid_bpb"] == pytest.approx(
        listed["mixtures"][best]["figures"]["valid"]["bits_per_byte"], abs=0.02)  # same text, scored as raw text
    client = MlflowClient(mlflow_uri)
    assert str(client.get_model_version_by_alias("arpipe-mixture", "champion").version) == "1"

    sets = [f"work_dir={cfg.work_dir}", f"tracking.uri={mlflow_uri}"]
    runner = CliRunner()
    for model in ("infinigram", "mixture", "mixture-rnn_infinigram", "models:/arpipe-mixture@champion",
                  "models:/arpipe-infinigram@champion"):
        for strategy in STRATEGIES:
            args = ["generate", "--model", model, "--prompt", "The cat", "--max-tokens", "6", "--strategy", *strategy]
            for s in sets:
                args += ["--set", s]
            r = runner.invoke(app, args, env={"MLFLOW_TRACKING_URI": mlflow_uri})
            assert r.exit_code == 0 and r.output.startswith("The cat"), (model, strategy, r.output)
    text = tmp_path / "some.txt"
    text.write_text("The cat sat on a mat.\n\nThe king said no.\n")
    r = runner.invoke(app, ["score", str(text), "--model", best, *sum((["--set", s] for s in sets), [])])
    assert r.exit_code == 0 and "bits_per_byte" in r.output, r.output

    # without the rnn no mixture fits: evaluate still runs, reports none, and the registry skips the family
    alone = pipeline(config=cfg_for("models=[ngram, infinigram]"))
    out = Path({s["stage"]: s for s in alone["stages"]}["evaluate"]["output_dir"])
    assert json.loads((out / "mixtures.json").read_text()) == {"mixtures": {}, "best": None}
    assert "arpipe-mixture" not in {d["model"] for d in alone["registry"]}
