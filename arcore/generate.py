"""Text in, text out: load a pipeline model by name, continue a prompt, score a text.

In: the output directories of the tokenizer stage and the model stages (``ngram``, ``rnn``), a model
name, a ``DecodeConfig`` and text. Out: generated strings, or an ``Evaluation`` of a text. The
``arpipe generate`` / ``arpipe score`` commands, the MLflow pyfunc and the evaluate stage's samples all
go through here, so every front end decodes and scores the same way.

Model names: ``histogram``; ``ngram`` (modified Kneser-Ney, or the first estimator fitted) or
``ngram-<smoothing>``; ``rnn``; ``transformer``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Optional, Sequence

import numpy as np

from arcore.decode import DecodeConfig, generate
from arcore.errors import ConfigError, StageError
from arcore.evaluate import Evaluation, count_text, evaluate_model
from arcore.lm import LanguageModel
from arcore.tokenize.store import LoadedTokenizer

MODEL_FAMILIES = ("histogram", "ngram", "rnn", "transformer")


def load_language_model(name: str, tok: LoadedTokenizer, stage_dirs: Mapping[str, Optional[Path]]) -> LanguageModel:
    """The model called ``name`` from the stage output directories (``{"ngram": dir, "rnn": dir}``)."""
    family = name.split("-", 1)[0]
    if family not in MODEL_FAMILIES:
        raise ConfigError(f"unknown model {name!r}; choose histogram, ngram, ngram-<smoothing>, rnn or transformer")
    stage = "ngram" if family == "histogram" else family
    directory = stage_dirs.get(stage)
    if directory is None:
        raise StageError(f"no {stage} stage output to load {name!r} from; run `arpipe run` first")
    if family == "rnn":
        from arcore.rnn.stage import load_rnn  # torch is imported only when a neural model is asked for

        return load_rnn(Path(directory), tok)
    if family == "transformer":
        from arcore.transformer.stage import load_transformer

        return load_transformer(Path(directory), tok)
    from arcore.ngram.stage import load_histogram, load_models

    if family == "histogram":
        return load_histogram(Path(directory), tok)
    models = load_models(Path(directory), tok)
    if name == "ngram":
        ngrams = [k for k in models if k.startswith("ngram-")]
        name = "ngram-kneser-ney" if "ngram-kneser-ney" in models else ngrams[0]
    if name not in models:
        raise ConfigError(f"model {name!r} was not fitted; fitted: {', '.join(models)} (set ngram.models)")
    return models[name]


def load_models(tok: LoadedTokenizer, stage_dirs: Mapping[str, Path]) -> dict[str, LanguageModel]:
    """Every model the given stage outputs hold, by the names ``evaluate`` and ``generate`` use."""
    models: dict[str, LanguageModel] = {}
    if "ngram" in stage_dirs:
        from arcore.ngram.stage import load_models as load_ngram

        models.update(load_ngram(Path(stage_dirs["ngram"]), tok))
    for family in ("rnn", "transformer"):
        if family in stage_dirs:
            models[family] = load_language_model(family, tok, stage_dirs)
    return models


def encode_prompt(tok: LoadedTokenizer, prompt: str) -> list[int]:
    return tok.tokenizer.encode(prompt, add_special_tokens=False).ids if prompt else []


def generate_text(model: LanguageModel, tok: LoadedTokenizer, prompt: str, cfg: DecodeConfig,
                  require_prompt: bool = False) -> list[str]:
    """The prompt followed by each generated continuation (n-best for beam, num_samples for sampling)."""
    outputs = generate(model, encode_prompt(tok, prompt), cfg, require_prompt=require_prompt)
    return [prompt + tok.tokenizer.decode([i for i in g.ids if i != tok.eos_id], skip_special_tokens=True)
            for g in outputs]


def encode_documents(tok: LoadedTokenizer, texts: Sequence[str]) -> np.ndarray:
    """Documents in the shard layout: each one's ids followed by ``</s>``."""
    encoded = tok.tokenizer.encode_batch(list(texts), add_special_tokens=False)
    parts = [np.asarray(e.ids + [tok.eos_id], dtype=np.int64) for e in encoded]
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)


def score_text(model: LanguageModel, tok: LoadedTokenizer, texts: Sequence[str]) -> Evaluation:
    """``arcore.evaluate`` figures of ``texts`` (one document each) under ``model``."""
    texts = [t for t in texts if t.strip()]
    if not texts:
        raise ConfigError("nothing to score: the text has no non-blank documents")
    return evaluate_model(model, encode_documents(tok, texts), count_text(texts), tok.unk_id)


BUNDLE_META = "bundle.json"


def export_bundle(name: str, tokenizer_dir: Path, stage_dirs: Mapping[str, Optional[Path]], dest: Path) -> Path:
    """A self-contained directory with the tokenizer and the one model ``name``: what the MLflow pyfunc
    ships. ``dest/tokenizer/``, ``dest/model/`` (only the files that model needs), ``dest/bundle.json``."""
    import json
    import shutil

    dest = Path(dest)
    family = name.split("-", 1)[0]
    shutil.copytree(tokenizer_dir, dest / "tokenizer", ignore=shutil.ignore_patterns("manifest.json"))
    source = Path(stage_dirs["ngram" if family == "histogram" else family])
    model_dir = dest / "model"
    if family in ("rnn", "transformer"):
        from arcore.rnn.stage import MODEL_SUBDIR  # both neural stages keep their weights in model/

        shutil.copytree(source / MODEL_SUBDIR, model_dir / MODEL_SUBDIR)
    else:
        from arcore.ngram.stage import HISTOGRAM_FILE

        model_dir.mkdir(parents=True)
        shutil.copy2(source / HISTOGRAM_FILE, model_dir / HISTOGRAM_FILE)
        if family == "ngram":
            listed = json.loads((source / "models.json").read_text())
            smoothing = name.split("-", 1)[1] if "-" in name else (
                "kneser-ney" if "kneser-ney" in listed["models"] else next(iter(listed["models"])))
            name = f"ngram-{smoothing}"
            shutil.copytree(source / f"{smoothing}.binary", model_dir / f"{smoothing}.binary")
            listed["models"] = {smoothing: listed["models"][smoothing]}
            (model_dir / "models.json").write_text(json.dumps(listed, indent=2))
    (dest / BUNDLE_META).write_text(json.dumps({"model": name}))
    return dest


def load_bundle(bundle_dir: Path) -> tuple[LoadedTokenizer, LanguageModel, str]:
    import json

    from arcore.tokenize.store import load_tokenizer

    bundle_dir = Path(bundle_dir)
    name = json.loads((bundle_dir / BUNDLE_META).read_text())["model"]
    tok = load_tokenizer(bundle_dir / "tokenizer")
    model = load_language_model(name, tok, {s: bundle_dir / "model" for s in ("ngram", "rnn", "transformer")})
    return tok, model, name
