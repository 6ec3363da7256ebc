"""Generation and scoring front ends on a real pipeline run: CLI, MLflow pyfunc, evaluate samples."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from arcore.config import load_config
from flows.cli import app
from flows.pipeline import pipeline
from tests.conftest import FAST, write_corpus


@pytest.fixture(scope="module")
def trained(prefect_harness, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("generate")
    corpus = write_corpus(tmp / "corpus.txt", n_paragraphs=400)
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    config_file = tmp / "arpipe.toml"
    config_file.write_text(
        f'work_dir = "{tmp / "work"}"\n[tracking]\nuri = "{uri}"\n'
        f'[ingest]\ninputs = ["{corpus}"]\nvalid_fraction = 0.1\ntest_fraction = 0.1\n'
        '[tokenizer]\nvocab_size = 400\n'
    )
    config_file.write_text('models = ["ngram", "rnn", "transformer"]\n' + config_file.read_text())
    summary = pipeline(config=load_config(config_file, [s for s in FAST if not s.startswith("tokenizer.")]))
    return {"config": config_file, "summary": summary, "uri": uri, "tmp": tmp}


def cli(trained, *args):
    return CliRunner().invoke(app, [*args, "--config", str(trained["config"])])


MODELS = ["histogram", "ngram", "ngram-laplace", "ngram-interpolated", "rnn", "transformer"]
STRATEGIES = [["--strategy", "greedy"], ["--strategy", "sample", "--temperature", "0.7"],
              ["--strategy", "top-k", "--k", "5"], ["--strategy", "top-p", "--p", "0.8"],
              ["--strategy", "beam", "--beam-width", "3", "--n", "2"]]


@pytest.mark.parametrize("model", MODELS)
def test_every_decoder_on_every_model(trained, model):
    grew = 0
    for strategy in STRATEGIES:
        r = cli(trained, "generate", "--model", model, "--prompt", "The cat", "--max-tokens", "12", *strategy)
        assert r.exit_code == 0, r.output
        assert r.output.startswith("The cat") or r.output.startswith("--- 1\nThe cat")
        grew += len(r.output.strip()) > len("The cat")  # a model may end the document at once (</s>)
    assert grew >= 3


def test_sampling_is_reproducible_by_seed(trained):
    runs = [cli(trained, "generate", "--model", "ngram", "--seed", str(s), "--max-tokens", "20").output
            for s in (3, 3, 4)]
    assert runs[0] == runs[1] and runs[0] != runs[2]


@pytest.mark.parametrize("args, message", [
    (["--strategy", "top-k", "--k", "0"], "error: top_k (--k) must be an integer >= 1, got 0"),
    (["--strategy", "top-p", "--p", "0"], "error: top_p (--p) must be in (0, 1], got 0"),
    (["--strategy", "top-p", "--p", "1.5"], "error: top_p (--p) must be in (0, 1], got 1.5"),
    (["--temperature", "0"], "error: temperature (--temperature) must be a finite number > 0"),
    (["--model", "ngram-katz"], "error: model 'ngram-katz' was not fitted"),
    (["--model", "gpt"], "error: unknown model 'gpt'"),
])
def test_bad_decoding_parameters(trained, args, message):
    r = cli(trained, "generate", *args)
    assert r.exit_code == 2 and message in r.output, r.output


def test_score_file(trained, tmp_path):
    text = tmp_path / "t.txt"
    text.write_text("The cat sat on the mat.\n\nThe dog ran to the river.\n")
    r = cli(trained, "score", str(text), "--model", "ngram", "--json")
    assert r.exit_code == 0, r.output
    result = json.loads(r.output)
    assert result["documents"] == 2 and result["words"] == 12
    assert result["source_bytes"] == len("The cat sat on the mat.") + 1 + len("The dog ran to the river.") + 1
    assert 0 < result["bits_per_byte"] < 8
    laplace = json.loads(cli(trained, "score", str(text), "--model", "ngram-laplace", "--json").output)
    assert laplace["bits_per_byte"] > result["bits_per_byte"]


def test_pyfunc_from_the_ngram_run(trained):
    import mlflow.pyfunc

    ngram = next(s for s in trained["summary"]["stages"] if s["stage"] == "ngram")
    run = MlflowClient(trained["uri"]).get_run(ngram["mlflow_run_id"])
    uri = run.data.tags["arpipe.model.ngram"]
    mlflow.set_tracking_uri(trained["uri"])
    model = mlflow.pyfunc.load_model(uri)
    params = model.metadata.get_params_schema()
    assert {"strategy", "temperature", "top_k", "top_p", "beam_width", "max_tokens", "seed"} <= {
        p.name for p in params.params}
    out = model.predict(pd.DataFrame({"prompt": ["The cat", ""]}),
                        params={"strategy": "top-p", "top_p": 0.9, "max_tokens": 10, "seed": 1})
    assert list(out.columns) == ["prompt", "text"] and out.text[0].startswith("The cat")
    again = model.predict(pd.DataFrame({"prompt": ["The cat"]}),
                          params={"strategy": "top-p", "top_p": 0.9, "max_tokens": 10, "seed": 1})
    assert again.text[0] == out.text[0]
    from mlflow.exceptions import MlflowException

    with pytest.raises(MlflowException, match="prompt"):  # the signature is enforced: the column is required
        model.predict(pd.DataFrame({"text": ["The cat"]}))
    with pytest.raises(MlflowException, match="strategy"):  # and params are typed
        model.predict(pd.DataFrame({"prompt": ["The cat"]}), params={"strategy": 3})
    r = CliRunner().invoke(app, ["generate", "--model", uri, "--prompt", "The cat", "--strategy", "greedy"],
                           env={"MLFLOW_TRACKING_URI": trained["uri"]})
    assert r.exit_code == 0 and r.output.startswith("The cat"), r.output


def test_pyfunc_takes_a_list_of_prompts_and_refuses_unknown_params(trained):
    import inspect

    import mlflow.pyfunc
    from mlflow.exceptions import MlflowException

    from flows.cli_generate import generate_command
    from tasks.pyfunc import PARAMS

    ngram = next(s for s in trained["summary"]["stages"] if s["stage"] == "ngram")
    mlflow.set_tracking_uri(trained["uri"])
    model = mlflow.pyfunc.load_model(MlflowClient(trained["uri"]).get_run(ngram["mlflow_run_id"]).data.tags[
        "arpipe.model.ngram"])
    greedy = {"strategy": "greedy", "max_tokens": 8}
    listed = model.predict(["ROMEO:", "The cat"], params=greedy)
    framed = model.predict(pd.DataFrame({"prompt": ["ROMEO:", "The cat"]}), params=greedy)
    assert listed.to_dict("records") == framed.to_dict("records")
    assert list(listed.prompt) == ["ROMEO:", "The cat"] and listed.text[1].startswith("The cat")
    assert model.predict("ROMEO:", params=greedy).text[0] == listed.text[0]
    # the model's own predict names the allowed params (MLflow's wrapper drops unknown ones before it)
    with pytest.raises(MlflowException, match=r"unknown param\(s\) 'temprature'; the params are: strategy, "
                                              r"temperature, .*, seed"):
        model.unwrap_python_model().predict(None, pd.DataFrame({"prompt": ["ROMEO:"]}), params={"temprature": 0.5})

    # the served defaults are the CLI's: beam search ranks with the same length penalty
    cli_defaults = {name: p.default.default for name, p in inspect.signature(generate_command).parameters.items()}
    served = {spec.name: spec.default for spec in PARAMS.params}
    assert served["length_penalty"] == cli_defaults["length_penalty"] == 0.6
    assert {k: served[k] for k in ("strategy", "temperature", "beam_width", "max_tokens", "min_tokens", "seed")} == {
        k: cli_defaults[k] for k in ("strategy", "temperature", "beam_width", "max_tokens", "min_tokens", "seed")}
    assert model.metadata.get_params_schema().to_dict() == PARAMS.to_dict()


def test_evaluate_samples_every_model_and_decoder(trained):
    evaluate = next(s for s in trained["summary"]["stages"] if s["stage"] == "evaluate")
    from pathlib import Path

    samples = json.loads((Path(evaluate["output_dir"]) / "samples.json").read_text())
    base = {"histogram", "ngram-kneser-ney", "ngram-laplace", "ngram-interpolated", "rnn", "transformer"}
    assert base <= set(samples)
    assert all(name.startswith("mixture-") for name in set(samples) - base)  # evaluate's mixtures decode too
    for by_strategy in samples.values():
        assert set(by_strategy) == {"greedy", "sample", "top-k", "top-p", "beam"}
        assert all(text for text in by_strategy.values())


@pytest.mark.parametrize("family", ["rnn", "transformer"])
def test_neural_pyfuncs(trained, family):
    import mlflow.pyfunc

    stage = next(s for s in trained["summary"]["stages"] if s["stage"] == family)
    uri = MlflowClient(trained["uri"]).get_run(stage["mlflow_run_id"]).data.tags[f"arpipe.model.{family}"]
    mlflow.set_tracking_uri(trained["uri"])
    out = mlflow.pyfunc.load_model(uri).predict(
        pd.DataFrame({"prompt": ["The dog"]}), params={"strategy": "beam", "beam_width": 3, "max_tokens": 6,
                                                       "min_tokens": 2})
    assert out.text[0].startswith("The dog") and len(out.text[0]) > len("The dog")
