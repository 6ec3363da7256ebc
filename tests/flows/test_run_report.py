"""The run report (issue 14, item 6): one self-contained page per pipeline run, beside the run record, on
the MLflow parent run and as a Prefect artifact. A real pipeline run; the report is read back as a user
opens it (the HTML file, the parent run's artifacts)."""

from __future__ import annotations

import re
from pathlib import Path

from mlflow.tracking import MlflowClient

from arcore.config import load_config
from flows.pipeline import pipeline
from tests.conftest import FAST, write_corpus

SECTIONS = ("## Corpus and splits", "## Tokenizer", "## Models", "## Training", "## Samples", "## Registry",
            "## Config")


def test_every_run_writes_a_self_contained_report(prefect_harness, tmp_path, mlflow_uri):
    corpus = write_corpus(tmp_path / "corpus" / "a.txt", n_paragraphs=120)
    work = tmp_path / "work"
    cfg = load_config(overrides=[f"work_dir={work}", f"tracking.uri={mlflow_uri}", f"ingest.inputs=[{corpus}]",
                                 "ingest.valid_fraction=0.1", "ingest.test_fraction=0.1", "ngram.order=3", *FAST])
    summary = pipeline(config=cfg)

    md_files = sorted((work / "runs").glob("*.report.md"))
    html_files = sorted((work / "runs").glob("*.report.html"))
    assert len(md_files) == len(html_files) == 1
    md, page = md_files[0].read_text(), html_files[0].read_text()
    positions = [md.index(s) for s in SECTIONS]
    assert positions == sorted(positions)
    for stage in ("ingest", "tokenizer", "shards", "ngram", "rnn", "evaluate"):
        assert f"| {stage} | completed |" in md
    assert "| rnn | 1 |" in md  # the training table, one row per epoch
    assert "ngram-kneser-ney" in md and "**greedy**" in md and "**beam**" in md
    assert f"work_dir: {work}" in md  # the resolved config
    registered = {d["model"] for d in summary["registry"]}
    assert registered and all(f"| {m} |" in md for m in registered)
    # HTML: the same sections, tables rendered, every chart embedded (no file it needs elsewhere)
    assert "<table>" in page and "<h2>Samples</h2>" in page
    images = re.findall(r'<img alt="([^"]+)" src="data:image/png;base64,', page)
    assert {"Bits per byte on the test split", "Learning curves", "rnn: gradient norm across a BPTT window"} <= set(images)
    assert not re.search(r'src="(?!data:)', page)

    client = MlflowClient(mlflow_uri)
    names = {a.path for a in client.list_artifacts(summary["mlflow_run_id"])}
    assert {"report.md", "report.html", "summary.md", "config.yaml"} <= names

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    with get_client(sync_client=True) as prefect:  # each stage's task run has its metrics as a table
        tables = prefect.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["rnn-metrics"])))
    assert tables and "best_valid_loss" in str(tables[0].data)

    again = pipeline(config=cfg)  # a cached run has its own report, all stages cached
    assert len(list((work / "runs").glob("*.report.html"))) == 2
    assert {s["state"] for s in again["stages"]} == {"cached"}
