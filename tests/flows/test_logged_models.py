"""Models and data as MLflow 3 shows them (issue 14 items 2 and 3): each trained model a LoggedModel of the
stage run that trained it (input example, evaluate's figures linked, registered from it), every stage run
that reads data naming the splits it read as dataset inputs, and a registered model served by
``mlflow models serve``. One pipeline run and one all-cached rerun, real Prefect engine, real SQLite store.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import httpx
import pytest
from mlflow.models import Model
from mlflow.tracking import MlflowClient

from arcore.datasets import STAGE_READS, split_dataset
from flows.pipeline import pipeline
from tests.conftest import small_run_config, write_corpus

EXPORTED = {"histogram": "ngram", "ngram": "ngram", "rnn": "rnn", "infinigram": "infinigram", "mixture": "evaluate"}


@pytest.fixture(scope="module")
def runs(prefect_harness, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("logged-models")
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    corpus = write_corpus(tmp / "corpus.txt")
    cfg = small_run_config(tmp, corpus)
    first = pipeline(config=cfg)
    second = pipeline(config=cfg)
    return uri, tmp, first, second


def stage(summary: dict, name: str) -> dict:
    return next(s for s in summary["stages"] if s["stage"] == name)


def test_each_trained_model_is_a_logged_model_registered_from_itself(runs):
    uri, _, first, second = runs
    client = MlflowClient(uri)
    exp_id = client.get_run(first["mlflow_run_id"]).info.experiment_id
    models = {m.name: m for m in client.search_logged_models([exp_id])}
    assert set(models) == set(EXPORTED)  # one per trained model, and none more for the cached rerun
    evaluate = stage(first, "evaluate")
    for name, model in models.items():
        run_id = stage(first, EXPORTED[name])["mlflow_run_id"]
        assert model.source_run_id == run_id and model.status.value == "READY", name
        assert client.get_run(run_id).data.tags[f"arpipe.model.{name}"] == f"models:/{model.model_id}"
        assert model.model_id in {o.model_id for o in client.get_run(run_id).outputs.model_outputs}

        local = _download(model.artifact_location, runs[1] / "downloaded" / name)
        assert Model.load(local).load_input_example(str(local)) == ["ROMEO:"], name
        assert json.loads((local / "serving_input_example.json").read_text()) == {"inputs": ["ROMEO:"]}

        # evaluate's figures of the model (by the name evaluate gives it) are the model's, on the splits' datasets
        linked = {m.key: m for m in model.metrics}
        scored = json.loads((local / "artifacts" / "bundle" / "bundle.json").read_text())["model"]
        for split in ("valid", "test"):
            key = f"{scored}.{split}.bits_per_byte"
            assert linked[key].value == evaluate["metrics"][key], key
            assert linked[key].run_id == evaluate["mlflow_run_id"]
            assert linked[key].dataset_name == f"shards-{split}"
    inputs = {m.model_id for m in client.get_run(evaluate["mlflow_run_id"]).inputs.model_inputs}
    assert inputs == {m.model_id for n, m in models.items() if n != "mixture"}  # what evaluate scored

    # the registry's versions come from the logged models: source models:/<model_id>, listed on the model
    assert {d["model"] for d in first["registry"]} == {f"arpipe-{n}" for n in ("ngram", "rnn", "infinigram",
                                                                                "mixture")}
    assert second["registry"] == []
    for d in first["registry"]:
        version = client.get_model_version(d["model"], d["version"])
        model = models[d["model"].removeprefix("arpipe-")]
        assert version.source == f"models:/{model.model_id}"
        assert version.run_id == model.source_run_id
        listed = json.loads(client.get_logged_model(model.model_id).tags["mlflow.modelVersions"])
        assert [(v["name"], str(v["version"])) for v in listed] == [(d["model"], d["version"])]
    champion = client.get_model_version_by_alias("arpipe-rnn", "champion")
    assert champion.tags["arpipe.promoted"] == "true"
    assert client.get_model_version_download_uri("arpipe-rnn", champion.version) == models["rnn"].artifact_location


def _download(location: str, dst: Path) -> Path:
    import mlflow.artifacts

    dst.mkdir(parents=True, exist_ok=True)
    return Path(mlflow.artifacts.download_artifacts(artifact_uri=location, dst_path=str(dst)))


def test_stage_runs_name_the_data_they_read(runs):
    uri, _, first, second = runs
    client = MlflowClient(uri)
    dirs = {s["stage"]: Path(s["output_dir"]) for s in first["stages"]}
    for summary in (first, second):  # a cached stage read the same data: the same datasets
        for s in summary["stages"]:
            inputs = client.get_run(s["mlflow_run_id"]).inputs.dataset_inputs
            if s["stage"] not in STAGE_READS:
                assert inputs == [], s["stage"]
                continue
            source, splits = STAGE_READS[s["stage"]]
            got = {(i.dataset.name, i.dataset.digest, {t.key: t.value for t in i.tags}["mlflow.data.context"])
                   for i in inputs}
            want = {(d.name, d.digest, d.context) for d in (split_dataset(dirs[source], split) for split in splits)}
            assert got == want, s["stage"]
    ingest, shards = stage(first, "ingest")["metrics"], stage(first, "shards")["metrics"]
    by_name = {i.dataset.name: i.dataset for name in ("tokenizer", "shards", "evaluate")
               for i in client.get_run(stage(first, name)["mlflow_run_id"]).inputs.dataset_inputs}
    assert {"documents-train", "documents-valid", "documents-test", "shards-valid", "shards-test"} <= set(by_name)
    for split in ("train", "valid", "test"):
        documents = json.loads(by_name[f"documents-{split}"].profile)
        assert documents == {"documents": ingest[f"documents_{split}"], "bytes": ingest[f"bytes_{split}"]}
        source = json.loads(by_name[f"documents-{split}"].source)
        assert source["split"] == split and source["uri"] == (dirs["ingest"] / "documents.parquet").as_uri()
    for split in ("valid", "test"):
        profile = json.loads(by_name[f"shards-{split}"].profile)
        assert profile["tokens"] == shards[f"{split}_tokens"] > 0
        assert profile["documents"] == ingest[f"documents_{split}"]
        columns = {c["name"] for c in json.loads(by_name[f"shards-{split}"].schema)["mlflow_colspec"]}
        assert columns == {"doc_id", "ids", "source_bytes", "words"}
        shard_manifest = json.loads((dirs["shards"] / "manifest.json").read_text())["files"]
        assert by_name[f"shards-{split}"].digest == shard_manifest[f"{split}.manifest.json"]["sha256"][:32]


def test_the_champion_is_served_by_mlflow_models_serve(runs):
    from tests.ops.conftest import base_env, free_port, server

    uri, tmp, _, _ = runs
    home = tmp / "serve"
    home.mkdir(exist_ok=True)
    port = free_port()
    bin_dir = Path(sys.executable).parent
    cmd = [str(bin_dir / "mlflow"), "models", "serve", "-m", "models:/arpipe-rnn@champion",
           "--env-manager", "local", "-p", str(port), "-h", "127.0.0.1"]
    base = f"http://127.0.0.1:{port}"
    # the venv on PATH, as when it is activated: `--env-manager local` execs `uvicorn` by name
    env = base_env(MLFLOW_TRACKING_URI=uri, PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    with server(cmd, env, f"{base}/health", base, home):
        r = httpx.post(f"{base}/invocations", timeout=120, json={
            "inputs": ["The cat"], "params": {"strategy": "greedy", "max_tokens": 8, "min_tokens": 4}})
        assert r.status_code == 200, r.text
        [row] = r.json()["predictions"]
        assert row["prompt"] == "The cat" and row["text"].startswith("The cat") and len(row["text"]) > len("The cat")
