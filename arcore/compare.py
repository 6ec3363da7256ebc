"""The evaluate stage: every model side by side, and text from every decoder for every model.

In: the tokenizer, the token shards (valid/test ids and their text counts) and the loaded models
(``{name: LanguageModel}``: the histogram, each n-gram estimator, the RNN). Each split is read one shard
at a time per model (``arcore.evaluate.evaluate_stream``), or, with ``max_score_tokens``, as a
deterministic sample of whole documents (``arcore.heldout``) that every model scores. Out, in ``out_dir``:
- ``evaluation.json``: per model, per split, every figure of ``arcore.evaluate.Evaluation``
- ``comparison.table.json`` / ``comparison.md``: the test split ranked by bits per byte
- ``bits_per_byte.png``: the bar chart of that ranking
- ``samples.json`` / ``samples.md``: for each model, one continuation per decoding strategy
- ``mixtures.json``: each mixture fit here (``evaluate.mixtures``: linear interpolations of the loaded models,
  weights by EM on the valid split, ``arcore.mixture``), its parts, weights and valid figures, and the best
  one by valid bits per byte; the mixtures are scored, ranked, charted and sampled beside their parts.
  Their valid figures are on the text their weights were fit on (K - 1 free numbers, so barely optimistic);
  the test figures are clean.
Metrics: ``<model>.<split>.<figure>`` for bits per byte, perplexity per token and per word, OOV rate, and
per split ``<split>_tokens_evaluated`` beside ``<split>_tokens_total`` (equal unless a sample was scored,
which ``comparison.md`` then says).

Models share one tokenizer here, so per-token perplexities compare too; bits per byte (the lecture's
compression rate) is what compares across tokenizers.
"""

from __future__ import annotations

import math
from pathlib import Path
from dataclasses import dataclass
from typing import Literal, Mapping, Optional

from pydantic import BaseModel, ConfigDict, Field, field_validator

from arcore.decode import DecodeConfig
from arcore.evaluate import (DEFAULT_CHUNK_TOKENS, compare_models, document_chunks, evaluate_model, evaluate_stream,
                             plot_bits_per_byte, split_counts)
from arcore.generate import generate_text
from arcore.io import atomic_write_json, atomic_write_text
from arcore.lm import LanguageModel
from arcore.mixture import MixtureModel, ScoreMemo, fit_mixture, mixture_name
from arcore.shards.reader import iter_shard_ids, split_stats
from arcore.stage import Progress, StageOutput
from arcore.tokenize.store import LoadedTokenizer

Strategy = Literal["greedy", "sample", "top-k", "top-p", "beam"]
LOGGED_FIGURES = ("bits_per_byte", "perplexity_per_token", "perplexity_per_word", "oov_rate")


class EvaluateConfig(BaseModel):
    """splits: where models are scored. prompt: text every sample continues ('' starts a document).
    max_score_tokens: score each split on a deterministic sample of whole documents holding at most that
    many tokens (``arcore.heldout``; None or 0: the whole split). Bounds time and memory on large splits;
    the report says when a sample was used.
    The decoding settings are those of ``arcore.decode.DecodeConfig``, one sample per strategy
    (``max_tokens`` is a sample's length, not a scoring budget)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    splits: list[Literal["valid", "test"]] = Field(default_factory=lambda: ["valid", "test"], min_length=1)
    max_score_tokens: Optional[int] = Field(None, ge=0)
    prompt: str = ""
    strategies: list[Strategy] = Field(default_factory=lambda: ["greedy", "sample", "top-k", "top-p", "beam"])
    max_tokens: int = Field(48, ge=1, le=4096)
    min_tokens: int = Field(8, ge=0, description="no </s> before this many tokens, so every sample shows text")
    temperature: float = Field(0.8, gt=0.0)
    top_k: int = Field(40, ge=1)
    top_p: float = Field(0.9, gt=0.0, le=1.0)
    beam_width: int = Field(4, ge=1, le=64)
    length_penalty: float = Field(0.6, ge=0.0)
    seed: int = 0
    mixtures: list[list[str]] = Field(
        default_factory=lambda: [["rnn", "ngram-kneser-ney"], ["rnn", "infinigram"],
                                 ["rnn", "ngram-kneser-ney", "infinigram"]],
        description="model names to interpolate (each mixture at least two); a mixture is fit when all its "
                    "parts were loaded")
    mixture_fit_tokens: Optional[int] = Field(
        1_000_000, ge=0, description="fit mixture weights on a deterministic sample of whole valid documents "
                                     "of at most this many tokens (None or 0: the whole valid split)")

    @field_validator("mixtures")
    @classmethod
    def _mixtures(cls, value: list[list[str]]) -> list[list[str]]:
        for parts in value:
            if len(parts) < 2 or len(set(parts)) != len(parts):
                raise ValueError(f"a mixture needs at least two different models, got {parts}")
            if any(p.startswith("mixture") for p in parts):
                raise ValueError(f"a mixture's parts are models, not mixtures: {parts}")
        return value

    def decode_config(self, strategy: str) -> DecodeConfig:
        return DecodeConfig(
            strategy=strategy, temperature=self.temperature if strategy != "greedy" else 1.0,
            top_k=self.top_k if strategy == "top-k" else None, top_p=self.top_p if strategy == "top-p" else None,
            beam_width=self.beam_width, length_penalty=self.length_penalty, max_tokens=self.max_tokens,
            min_tokens=min(self.min_tokens, self.max_tokens), seed=self.seed,
        )


@dataclass(frozen=True)
class Coverage:
    """How much of a split the figures cover: all of it, or a sample of whole documents."""

    tokens_evaluated: int
    tokens_total: int
    documents_evaluated: int
    documents_total: int

    @property
    def sampled(self) -> bool:
        return self.documents_evaluated < self.documents_total


@dataclass(frozen=True)
class Scores:
    results: dict[str, dict[str, dict]]  # {model: {split: Evaluation.as_dict()}}
    coverage: dict[str, Coverage]  # {split: Coverage}


def score_splits(models: Mapping[str, LanguageModel], tok: LoadedTokenizer, shards_dir: Path, splits: list[str],
                 max_tokens: Optional[int] = None, progress: Progress = None) -> Scores:
    """Every model on every split: streamed shard by shard, or on one sample of at most ``max_tokens``."""
    from arcore.heldout import sample_documents

    results: dict[str, dict[str, dict]] = {name: {} for name in models}
    coverage: dict[str, Coverage] = {}
    for split in splits:
        stats = split_stats(shards_dir, split)
        sample = sample_documents(shards_dir, split, max_tokens, tok.sha256) if max_tokens else None
        counts = sample.counts if sample is not None else split_counts(shards_dir, split)
        for i, (name, model) in enumerate(models.items()):
            if sample is not None:
                ev = evaluate_model(model, sample.ids, counts, tok.unk_id)
            else:
                ev = evaluate_stream(model, iter_shard_ids(shards_dir, split, tok.sha256), counts, tok.unk_id)
            results[name][split] = ev.as_dict()
            if progress:
                progress(i + 1, len(models))
        evaluated = sample.tokens if sample is not None else stats.tokens
        coverage[split] = Coverage(evaluated, stats.tokens, counts.documents, stats.documents)
    return Scores(results, coverage)


def score_models(models: Mapping[str, LanguageModel], tok: LoadedTokenizer, shards_dir: Path,
                 splits: list[str], progress: Progress = None) -> dict[str, dict[str, dict]]:
    """``{model: {split: figures}}`` on the whole splits (``score_splits`` without a sample)."""
    return score_splits(models, tok, shards_dir, splits, progress=progress).results


def sample_texts(models: Mapping[str, LanguageModel], tok: LoadedTokenizer, cfg: EvaluateConfig) -> dict:
    """``{model: {strategy: text}}``, each the prompt's continuation under that decoder."""
    return {
        name: {strategy: generate_text(model, tok, cfg.prompt, cfg.decode_config(strategy))[0]
               for strategy in cfg.strategies}
        for name, model in models.items()
    }


def score_tokens(model: LanguageModel, ids) -> "np.ndarray":
    """``model.score`` of whole documents, in the evaluate chunks (bounded memory for neural models)."""
    import numpy as np

    ids = np.asarray(ids)
    return np.concatenate([np.asarray(model.score(ids[a:b].astype(np.int64)), dtype=np.float64)
                           for a, b in document_chunks(ids, model.eos_id, DEFAULT_CHUNK_TOKENS)])


def fit_mixtures(cfg: EvaluateConfig, tok: LoadedTokenizer, shards_dir: Path,
                 models: dict[str, LanguageModel]) -> dict[str, MixtureModel]:
    """Each ``cfg.mixtures`` entry whose parts are all in ``models``, weights by EM on the valid split (or its
    ``mixture_fit_tokens`` sample); each part scores the valid text once, whatever the mixtures sharing it.
    The parts in ``models`` are replaced by ``ScoreMemo``s of themselves, which the mixtures share, so
    scoring a split under a part and its mixtures runs the part once per chunk."""
    from arcore.heldout import sample_documents

    wanted = [parts for parts in cfg.mixtures if all(p in models for p in parts)]
    for name in {p for parts in wanted for p in parts}:
        models[name] = ScoreMemo(models[name])
    stats = split_stats(shards_dir, "valid")
    if not wanted or stats.tokens == 0:
        return {}
    budget = cfg.mixture_fit_tokens or stats.tokens
    ids = sample_documents(shards_dir, "valid", budget, tok.sha256).ids
    logprobs = {p: score_tokens(models[p], ids) for p in dict.fromkeys(p for parts in wanted for p in parts)}
    mixtures = {}
    for parts in wanted:
        mixtures[mixture_name(parts)] = fit_mixture({p: models[p] for p in parts}, ids,
                                                     {p: logprobs[p] for p in parts})
    return mixtures


def mixtures_report(mixtures: Mapping[str, MixtureModel], results: Mapping[str, Mapping[str, dict]]) -> dict:
    """What ``mixtures.json`` holds: parts, weights and figures per mixture, and the best by valid bpb."""
    entries = {}
    for name, m in mixtures.items():
        entries[name] = {"parts": list(m.names), "weights": [float(w) for w in m.weights],
                         "figures": {split: {k: results[name][split][k] for k in LOGGED_FIGURES}
                                     for split in results.get(name, {})}}
    ranked = sorted(entries, key=lambda n: entries[n]["figures"].get("valid", next(iter(
        entries[n]["figures"].values()), {})).get("bits_per_byte", math.inf))
    return {"mixtures": entries, "best": ranked[0] if ranked else None}


def build_evaluation(cfg: EvaluateConfig, tok: LoadedTokenizer, shards_dir: Path,
                     models: Mapping[str, LanguageModel], out_dir: Path, progress: Progress = None) -> StageOutput:
    models = dict(models)
    mixtures = fit_mixtures(cfg, tok, shards_dir, models)
    models.update(mixtures)
    scores = score_splits(models, tok, shards_dir, cfg.splits, cfg.max_score_tokens, progress)
    results = scores.results
    atomic_write_json(out_dir / "evaluation.json", results)
    report = mixtures_report(mixtures, results)
    atomic_write_json(out_dir / "mixtures.json", report)
    ranked_split = "test" if "test" in cfg.splits else cfg.splits[0]
    per_model = {name: by_split[ranked_split] for name, by_split in results.items()}
    rows = compare_models(per_model)
    atomic_write_json(out_dir / "comparison.table.json", rows)
    atomic_write_text(out_dir / "comparison.md", comparison_markdown(rows, ranked_split, scores.coverage[ranked_split])
                      + mixtures_markdown(report))
    plot_bits_per_byte(per_model, out_dir / "bits_per_byte.png",
                       title=f"Bits per byte on {ranked_split} (lower is better)")
    samples = sample_texts(models, tok, cfg)
    atomic_write_json(out_dir / "samples.json", samples)
    atomic_write_text(out_dir / "samples.md", samples_markdown(samples, cfg.prompt))
    metrics = {
        f"{name}.{split}.{figure}": float(values[figure])
        for name, by_split in results.items() for split, values in by_split.items() for figure in LOGGED_FIGURES
        if math.isfinite(float(values[figure]))
    }
    for split, cov in scores.coverage.items():
        metrics[f"{split}_tokens_evaluated"] = float(cov.tokens_evaluated)
        metrics[f"{split}_tokens_total"] = float(cov.tokens_total)
    return StageOutput(
        metrics=metrics, records={"models": len(models)},
        artifacts=("evaluation.json", "comparison.table.json", "comparison.md", "bits_per_byte.png",
                   "samples.json", "samples.md", "mixtures.json"),
    )


def comparison_markdown(rows: list[dict], split: str, coverage: Optional[Coverage] = None) -> str:
    lines = [f"Models on the {split} split, best bits per byte first.", ""]
    if coverage is not None and coverage.sampled:
        lines += [f"Scored on a deterministic sample of whole documents (evaluate.max_score_tokens): "
                  f"{coverage.tokens_evaluated:,} of {coverage.tokens_total:,} tokens, {coverage.documents_evaluated:,} "
                  f"of {coverage.documents_total:,} documents; the figures are estimates for the whole split.", ""]
    lines += ["| rank | model | bits/byte | ppl/word | ppl/token | OOV rate |", "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['rank']} | {r['model']} | {r['bits_per_byte']:.4f} | {r['perplexity_per_word']:.2f} "
                     f"| {r['perplexity_per_token']:.2f} | {r['oov_rate']:.4f} |")
    return "\n".join(lines) + "\n"


def mixtures_markdown(report: Mapping) -> str:
    if not report["mixtures"]:
        return ""
    lines = ["", "Mixtures (weights by EM on the valid split):", ""]
    for name, entry in report["mixtures"].items():
        weights = ", ".join(f"{p} {w:.3f}" for p, w in zip(entry["parts"], entry["weights"]))
        lines.append(f"- {name}: {weights}" + (" (best on valid)" if name == report["best"] else ""))
    return "\n".join(lines) + "\n"


def samples_markdown(samples: Mapping[str, Mapping[str, str]], prompt: str) -> str:
    parts = [f"Samples (prompt: {prompt!r})", ""]
    for name, by_strategy in samples.items():
        parts.append(f"## {name}")
        for strategy, text in by_strategy.items():
            if not text.strip():  # e.g. the histogram's greedy: its most probable token, "\n", again and again
                shown = (f"{len(text)} x {text[0]!r}" if len(set(text)) == 1 else
                         repr(text) if len(text) <= 40 else f"{text[:20]!r} ... ({len(text)} characters)")
                parts += [f"**{strategy}**", "", f"only whitespace: {shown}", ""]
                continue
            fence = "~~~~" if "```" in text else "```"
            parts += [f"**{strategy}**", "", fence + "text", text, fence, ""]
    return "\n".join(parts)
