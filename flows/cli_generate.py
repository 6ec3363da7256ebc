"""``arpipe generate`` and ``arpipe score``: the trained models as text in, text out.

Models come from the latest finished pipeline run (one run's tokenizer, n-gram and RNN outputs, so they
always fit together), or from an MLflow model URI (``runs:/<id>/ngram``, ``models:/arpipe-rnn@champion``)
through the generation pyfunc.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from arcore.errors import ArpipeError

ModelOpt = typer.Option("ngram", "--model", "-m",
                        help="histogram | ngram | ngram-<smoothing> | rnn | transformer | infinigram | mixture | "
                             "mixture-<model>_<model> | an MLflow model URI")


_OPTION_OF_FIELD = {"top_k": "--k", "top_p": "--p", "n_best": "--n", "num_samples": "--n"}


def option_errors(e: ValueError) -> str:
    """A ValidationError of DecodeConfig as one line naming the options and what they allow
    (``--strategy 'nucleus': Input should be 'greedy', 'sample', ...``), without pydantic's URL lines."""
    if not hasattr(e, "errors"):
        return str(e).splitlines()[0] if str(e) else "invalid option"
    parts = []
    for err in e.errors():
        msg = err["msg"].removeprefix("Value error, ")
        if not err["loc"]:  # a check across options
            parts.append(msg)
            continue
        field = str(err["loc"][0])
        option = _OPTION_OF_FIELD.get(field, "--" + field.replace("_", "-"))
        given = f" {err['input']!r}" if "input" in err and not isinstance(err["input"], dict) else ""
        parts.append(f"{option}{given}: {msg}")
    return "; ".join(parts)


def _pipeline_outputs(config: Optional[Path], sets: list[str]) -> dict[str, Path]:
    from arcore.runs import latest_outputs
    from flows.cli import prepare

    return latest_outputs(prepare(config, sets).work_dir, ("tokenizer", "ngram", "rnn", "transformer", "infinigram",
                                                              "evaluate"))


def _load(model: str, config: Optional[Path], sets: list[str]):
    from arcore.errors import StageError
    from arcore.generate import load_language_model
    from arcore.tokenize.store import load_tokenizer

    dirs = _pipeline_outputs(config, sets)
    if "tokenizer" not in dirs:
        raise StageError("no tokenizer output yet; run `arpipe run` first")
    tok = load_tokenizer(dirs["tokenizer"])
    return tok, load_language_model(model, tok, dirs)


def generate_command(
    model: str = ModelOpt,
    strategy: str = typer.Option("sample", "--strategy", "-s", help="greedy | sample | top-k | top-p | beam"),
    prompt: str = typer.Option("", "--prompt", help="text to continue ('' starts a new document)"),
    temperature: float = typer.Option(1.0, "--temperature", "-t", help="divide the logits by this before sampling (< 1: sharper, > 1: flatter)"),
    k: Optional[int] = typer.Option(None, "--k", help="top-k: keep the k most likely tokens"),
    p: Optional[float] = typer.Option(None, "--p", help="top-p: keep the smallest set with mass >= p"),
    beam_width: int = typer.Option(4, "--beam-width", help="beam: hypotheses kept per step"),
    length_penalty: float = typer.Option(0.6, "--length-penalty", help="beam: GNMT length penalty alpha"),
    n: int = typer.Option(1, "--n", help="samples to draw, or beam hypotheses to print"),
    max_tokens: int = typer.Option(64, "--max-tokens", help="tokens to generate at most"),
    min_tokens: int = typer.Option(0, "--min-tokens", help="forbid </s> before this many tokens"),
    seed: int = typer.Option(0, "--seed", help="random seed of the sampling strategies"),
    config: Optional[Path] = typer.Option(None, "--config", "-c", dir_okay=False, help="TOML or YAML config file (work_dir, tracking)"),
    set_: list[str] = typer.Option([], "--set", help="override: section.key=value (repeatable)"),
) -> None:
    """Continue --prompt with a trained model and one decoding strategy."""
    from flows.cli import fail

    try:
        from arcore.decode import DecodeConfig

        cfg = DecodeConfig(strategy=strategy, temperature=temperature, top_k=k, top_p=p, beam_width=beam_width,
                           n_best=n if strategy == "beam" else 1, num_samples=n if strategy != "beam" else 1,
                           length_penalty=length_penalty, max_tokens=max_tokens, min_tokens=min_tokens,
                           seed=seed)
        if ":/" in model:
            texts = _generate_from_uri(model, prompt, cfg, _tracking_uri(config, set_))
        else:
            from arcore.generate import generate_text

            tok, lm = _load(model, config, set_)
            texts = generate_text(lm, tok, prompt, cfg)
    except ArpipeError as e:
        raise fail(str(e), 2 if type(e).__name__ == "ConfigError" else 1)
    except ValueError as e:  # pydantic's ValidationError of the decode options
        raise fail(option_errors(e), 2)
    for i, text in enumerate(texts):
        if len(texts) > 1:
            typer.echo(f"--- {i + 1}")
        typer.echo(text)


def _tracking_uri(config: Optional[Path], set_: list[str]) -> str:
    """The store a ``models:/`` or ``runs:/`` URI names a model in: the config's, else
    ``$MLFLOW_TRACKING_URI``, else the default SQLite file (what ``arpipe run`` logged to)."""
    import os

    from arcore.config import load_config
    from tasks.tracking import DEFAULT_URI

    return load_config(config, set_).tracking.uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_URI


def _generate_from_uri(uri: str, prompt: str, cfg, store: str) -> list[str]:
    import os

    import mlflow.pyfunc
    import pandas as pd

    from tasks.tracking import global_tracking_uri

    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    try:
        with global_tracking_uri(store, servers_too=True):  # never a URI another caller left set
            model = mlflow.pyfunc.load_model(uri)
    except Exception as e:  # MLflow raises many types for a bad or unreachable URI
        raise ArpipeError(f"cannot load model {uri}: {str(e).splitlines()[0][:300]}") from None
    params = {"strategy": cfg.strategy, "temperature": cfg.temperature, "top_k": cfg.top_k or 0,
              "top_p": cfg.top_p or 1.0, "beam_width": cfg.beam_width, "length_penalty": cfg.length_penalty,
              "max_tokens": cfg.max_tokens, "min_tokens": cfg.min_tokens, "seed": cfg.seed or 0}
    return list(model.predict(pd.DataFrame({"prompt": [prompt]}), params=params)["text"])


def score_command(
    file: Path = typer.Argument(..., help="text file to score", dir_okay=False),
    model: str = ModelOpt,
    unit: str = typer.Option("paragraph", "--unit", help="documents: line | paragraph | file"),
    json_out: bool = typer.Option(False, "--json", help="print the figures as JSON"),
    config: Optional[Path] = typer.Option(None, "--config", "-c", dir_okay=False, help="TOML or YAML config file (work_dir, tracking)"),
    set_: list[str] = typer.Option([], "--set", help="override: section.key=value (repeatable)"),
) -> None:
    """Perplexity and bits per byte of a text file under a trained model."""
    import json

    from flows.cli import fail

    try:
        from arcore.generate import score_text
        from arcore.ingest.normalize import Repairs, normalize_text
        from arcore.ingest.readers import SkipFile, read_text

        if unit not in ("line", "paragraph", "file"):
            raise fail(f"--unit must be line, paragraph or file, got {unit!r}", 2)
        if not file.is_file():
            raise fail(f"no such file: {file}", 2)
        repairs = Repairs()
        try:
            texts = [normalize_text(d.text, repairs) for d in read_text(file, unit, "strict", repairs)]
        except SkipFile as e:
            raise fail(str(e), 1)
        tok, lm = _load(model, config, set_)
        result = score_text(lm, tok, texts).as_dict()
    except ArpipeError as e:
        raise fail(str(e), 2 if type(e).__name__ == "ConfigError" else 1)
    if json_out:
        typer.echo(json.dumps({"model": model, "file": str(file), **result}, indent=2))
        return
    for key in ("bits_per_byte", "perplexity_per_word", "perplexity_per_token", "nll_per_token", "oov_rate",
                "tokens", "words", "documents", "source_bytes"):
        typer.echo(f"{key:<22} {result[key]:.6g}" if isinstance(result[key], float) else f"{key:<22} {result[key]}")
