"""Text in, text out: load a pipeline model by name, continue a prompt, score a text.

In: the output directories of the tokenizer stage and the model stages (``ngram``, ``rnn``), a model
name, a ``DecodeConfig`` and text. Out: generated strings, or an ``Evaluation`` of a text. The
``arpipe generate`` / ``arpipe score`` commands, the MLflow pyfunc and the evaluate stage's samples all
go through here, so every front end decodes and scores the same way.

Model names: ``histogram``; ``ngram`` (modified Kneser-Ney, or the first estimator fitted) or
``ngram-<smoothing>``; ``rnn``; ``transformer``; ``infinigram``; ``mixture-<part>_<part>[_...]`` (a mixture
the evaluate stage fit, ``arcore.mixture``; its weights are in the evaluate output's ``mixtures.json``) or
``mixture`` (the one with the best valid bits per byte).
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

MODEL_FAMILIES = ("histogram", "ngram", "rnn", "transformer", "infinigram", "mixture")
MIXTURES_JSON = "mixtures.json"
# the stage whose output holds a family's files
FAMILY_STAGE = {"histogram": "ngram", "mixture": "evaluate"}


def load_language_model(name: str, tok: LoadedTokenizer, stage_dirs: Mapping[str, Optional[Path]]) -> LanguageModel:
    """The model called ``name`` from the stage output directories (``{"ngram": dir, "rnn": dir}``)."""
    family = name.split("-", 1)[0]
    if family not in MODEL_FAMILIES:
        raise ConfigError(f"unknown model {name!r}; choose histogram, ngram, ngram-<smoothing>, rnn, transformer, "
                          "infinigram, mixture or mixture-<model>_<model>")
    stage = FAMILY_STAGE.get(family, family)
    directory = stage_dirs.get(stage)
    if directory is None:
        raise StageError(f"no {stage} stage output to load {name!r} from; run `arpipe run` first")
    if family == "mixture":
        return load_mixture(name, tok, stage_dirs)
    if family == "infinigram":
        from arcore.infinigram.stage import load_infinigram

        return load_infinigram(Path(directory), tok)
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
    for family in ("rnn", "transformer", "infinigram"):
        if family in stage_dirs:
            models[family] = load_language_model(family, tok, stage_dirs)
    return models


def read_mixtures(evaluate_dir: Path) -> dict:
    """``mixtures.json`` of an evaluate output: ``{"mixtures": {name: {"parts", "weights", ...}}, "best": name}``."""
    import json

    path = Path(evaluate_dir) / MIXTURES_JSON
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise StageError(f"cannot read the mixtures of {path}: {e}; rerun the evaluate stage") from None


def load_mixture(name: str, tok: LoadedTokenizer, stage_dirs: Mapping[str, Optional[Path]]) -> LanguageModel:
    """The mixture ``name`` (``mixture``: the best one) with its parts loaded from ``stage_dirs``."""
    from arcore.mixture import MixtureModel

    listed = read_mixtures(Path(stage_dirs["evaluate"]))
    if name == "mixture":
        if not listed.get("best"):
            raise ConfigError("the evaluate stage fit no mixture (its parts did not run; see evaluate.mixtures)")
        name = listed["best"]
    if name not in listed["mixtures"]:
        raise ConfigError(f"mixture {name!r} was not fit; fit: {', '.join(listed['mixtures']) or 'none'} "
                          "(set evaluate.mixtures)")
    entry = listed["mixtures"][name]
    parts = tuple(load_language_model(part, tok, stage_dirs) for part in entry["parts"])
    return MixtureModel(parts, entry["weights"], tuple(entry["parts"]))


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
    ships. ``dest/tokenizer/``, ``dest/model/`` (only the files that model needs), ``dest/bundle.json``.
    A mixture's bundle holds each part's files under ``dest/model/<stage>/`` and its weights under
    ``dest/model/evaluate/mixtures.json``."""
    import json
    import shutil

    dest = Path(dest)
    shutil.copytree(tokenizer_dir, dest / "tokenizer", ignore=shutil.ignore_patterns("manifest.json"))
    if name.split("-", 1)[0] == "mixture":
        listed = read_mixtures(Path(stage_dirs["evaluate"]))
        name = listed["best"] if name == "mixture" else name
        if name not in listed["mixtures"]:
            raise ConfigError(f"mixture {name!r} was not fit; fit: {', '.join(listed['mixtures']) or 'none'}")
        entry = listed["mixtures"][name]
        for part in entry["parts"]:
            stage = FAMILY_STAGE.get(part.split("-", 1)[0], part.split("-", 1)[0])
            _copy_model_files(part, stage_dirs, dest / "model" / stage)
        (dest / "model" / "evaluate").mkdir(parents=True)
        (dest / "model" / "evaluate" / MIXTURES_JSON).write_text(json.dumps(
            {"mixtures": {name: entry}, "best": name}, indent=2))
    else:
        name = _copy_model_files(name, stage_dirs, dest / "model")
    (dest / BUNDLE_META).write_text(json.dumps({"model": name}))
    return dest


def exportable(name: str, stage_dirs: Mapping[str, Optional[Path]]) -> bool:
    """Whether ``export_bundle(name, ...)`` has a model to ship: ``mixture`` only when evaluate fit one."""
    if name.split("-", 1)[0] != "mixture":
        return True
    listed = read_mixtures(Path(stage_dirs["evaluate"]))
    return bool(listed.get("best")) if name == "mixture" else name in listed.get("mixtures", {})


def _copy_model_files(name: str, stage_dirs: Mapping[str, Optional[Path]], model_dir: Path) -> str:
    """Copy what model ``name`` loads from into ``model_dir``; returns its full name (``ngram`` resolved)."""
    import json
    import shutil

    family = name.split("-", 1)[0]
    source = Path(stage_dirs[FAMILY_STAGE.get(family, family)])
    if family in ("rnn", "transformer"):
        from arcore.rnn.stage import MODEL_SUBDIR  # both neural stages keep their weights in model/

        shutil.copytree(source / MODEL_SUBDIR, model_dir / MODEL_SUBDIR)
        return name
    model_dir.mkdir(parents=True, exist_ok=True)
    if family == "infinigram":
        from arcore.infinigram.index import REVERSED_IDS, SUFFIX_ARRAY
        from arcore.infinigram.stage import MODEL_JSON

        for file in (REVERSED_IDS, SUFFIX_ARRAY, MODEL_JSON):
            shutil.copy2(source / file, model_dir / file)
        return name
    from arcore.ngram.stage import HISTOGRAM_FILE

    shutil.copy2(source / HISTOGRAM_FILE, model_dir / HISTOGRAM_FILE)
    if family == "ngram":
        listed = json.loads((source / "models.json").read_text())
        smoothing = name.split("-", 1)[1] if "-" in name else (
            "kneser-ney" if "kneser-ney" in listed["models"] else next(iter(listed["models"])))
        name = f"ngram-{smoothing}"
        shutil.copytree(source / f"{smoothing}.binary", model_dir / f"{smoothing}.binary")
        kept = model_dir / "models.json"  # a mixture of two estimators shares one listing
        have = json.loads(kept.read_text())["models"] if kept.is_file() else {}
        listed["models"] = {**have, smoothing: listed["models"][smoothing]}
        kept.write_text(json.dumps(listed, indent=2))
    return name


def load_bundle(bundle_dir: Path) -> tuple[LoadedTokenizer, LanguageModel, str]:
    import json

    from arcore.tokenize.store import load_tokenizer

    bundle_dir = Path(bundle_dir)
    name = json.loads((bundle_dir / BUNDLE_META).read_text())["model"]
    tok = load_tokenizer(bundle_dir / "tokenizer")
    stages = ("ngram", "rnn", "transformer", "infinigram", "evaluate")  # a mixture's parts: model/<stage>/
    model = load_language_model(name, tok, {s: bundle_dir / "model" / s if (bundle_dir / "model" / s).is_dir()
                                            else bundle_dir / "model" for s in stages})
    return tok, model, name
