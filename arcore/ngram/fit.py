"""NGramConfig and fit_ngram_models: count once, estimate every configured model, save and reload them.

Input: train and valid ids (shard layout), the tokenizer's vocabulary size and special ids, a work
directory. Output: ``{name: BackoffModel}``; ``save_ngram_models`` writes a directory the pipeline stage
can commit and ``load_ngram_models`` reads back::

    <dir>/counts/order{n}.parquet      raw count tables (count_ngrams), when ``counts`` is given
    <dir>/<name>.arpa                  the portable model (KenLM loads it; ``arpa_suffix=".arpa.gz"``
                                       writes it gzip-compressed, as the pipeline stage does)
    <dir>/<name>.npz                   exact float64 arrays, what load_ngram_models reads
    <dir>/models.json                  written last: names, order, vocabulary, per-model info

Model names are the CLI's ``--smoothing`` values: mle, laplace, add-k, interpolated, katz, kneser-ney.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Callable, Literal, Optional, Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from arcore.errors import ConfigError, StageError
from arcore.ngram.additive import estimate_add_k, estimate_mle
from arcore.ngram.arpa import write_arpa
from arcore.ngram.backoff import BackoffModel
from arcore.ngram.counts import NGramCounts, atomic_write, count_ngrams, save_counts
from arcore.ngram.index import NGramIndex
from arcore.ngram.interpolation import estimate_interpolated
from arcore.ngram.katz import estimate_katz
from arcore.ngram.kneser_ney import estimate_kneser_ney
from arcore.parallel import OptionalMapper

Smoothing = Literal["mle", "laplace", "add-k", "interpolated", "katz", "kneser-ney"]
SMOOTHINGS: tuple[str, ...] = ("mle", "laplace", "add-k", "interpolated", "katz", "kneser-ney")


class NGramConfig(BaseModel):
    """The ``ngram`` stage's section of the pipeline config."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    order: int = Field(5, ge=1, le=10, description="highest n-gram order")
    models: list[Smoothing] = Field(default_factory=lambda: ["kneser-ney", "laplace", "interpolated"],
                                    min_length=1, description="estimators to fit, by smoothing name")
    memory_budget_mb: int = Field(1024, ge=16, description="counting spills sorted runs to disk beyond this")
    add_k: float = Field(0.5, gt=0.0, le=10.0, description="k of the add-k model (laplace is k = 1)")
    katz_max_count: int = Field(5, ge=0, le=20, description="Katz discounts counts up to this (K)")
    # lmplz refuses by default; the stage falls back instead, because small vocabularies (characters,
    # bytes) have no unigram seen in only 1-3 contexts. null restores lmplz's refusal.
    histogram_pseudocount: float = Field(
        1.0, ge=0.0, description="the histogram (unigram) model's pseudocount; 0 is pure counting, which "
        "gives tokens unseen in train probability 0 (infinite perplexity)")
    discount_fallback: Optional[tuple[float, float, float]] = Field(
        (0.5, 1.0, 1.5), description="Kneser-Ney D1, D2, D3+ for orders whose counts-of-counts cannot give "
                                     "them (lmplz's --discount_fallback values); null: refuse as lmplz does")

    @field_validator("models")
    @classmethod
    def _distinct(cls, models: list[str]) -> list[str]:
        if len(set(models)) != len(models):
            raise ValueError("models must not repeat a smoothing name")
        return models


def estimate(name: str, counts: NGramCounts | NGramIndex, *, valid_ids: np.ndarray | None = None,
             unk_id: int | None = None, add_k: float = 0.5, katz_max_count: int = 5,
             discount_fallback: tuple[float, float, float] | None = None) -> BackoffModel:
    """One estimator by its smoothing name."""
    if name == "mle":
        return estimate_mle(counts, unk_id=unk_id)
    if name == "laplace":
        return estimate_add_k(counts, 1.0, unk_id=unk_id, name="laplace")
    if name == "add-k":
        return estimate_add_k(counts, add_k, unk_id=unk_id, name="add-k")
    if name == "interpolated":
        if valid_ids is None:
            raise ConfigError("interpolated smoothing needs held-out ids to fit its weights")
        return estimate_interpolated(counts, valid_ids, unk_id=unk_id)
    if name == "katz":
        return estimate_katz(counts, katz_max_count, unk_id=unk_id)
    if name == "kneser-ney":
        return estimate_kneser_ney(counts, unk_id=unk_id, discount_fallback=discount_fallback)
    raise ConfigError(f"unknown smoothing {name!r}; choose one of {', '.join(SMOOTHINGS)}")


def fit_ngram_models(cfg: NGramConfig, train_ids: np.ndarray, valid_ids: np.ndarray, vocab_size: int,
                     bos_id: int, eos_id: int, unk_id: int | None, work_dir: Path,
                     progress: Callable[[int, Optional[int]], None] | None = None,
                     cuts: Sequence[int] = (), mapper: OptionalMapper = None) -> dict[str, BackoffModel]:
    """Count ``train_ids`` once and estimate ``cfg.models``; returns the models by name.

    ``cuts`` and ``mapper`` go to ``count_ngrams`` (chunk boundaries such as shard ends; where the map
    step runs); they change where the work happens, never the models.

    Sorted runs spill under ``work_dir/spill`` (removed afterwards); the merged count tables are written
    to ``work_dir/counts/order{n}.parquet`` (``load_counts`` reads them, e.g. for a counts-of-counts plot).
    """
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    counts = count_ngrams(train_ids, cfg.order, bos_id, eos_id, vocab_size=vocab_size,
                          memory_budget_bytes=cfg.memory_budget_mb << 20, spill_dir=work_dir / "spill",
                          progress=progress, cuts=cuts, mapper=mapper)
    save_counts(counts, work_dir / "counts")
    shutil.rmtree(work_dir / "spill", ignore_errors=True)
    index = NGramIndex.from_counts(counts)
    return {name: estimate(name, index, valid_ids=valid_ids, unk_id=unk_id, add_k=cfg.add_k,
                             katz_max_count=cfg.katz_max_count, discount_fallback=cfg.discount_fallback)
              for name in cfg.models}


def save_ngram_models(models: dict[str, BackoffModel], directory: Path, counts: NGramCounts | None = None,
                      words: Sequence[str] | None = None, arpa_suffix: str = ".arpa") -> list[str]:
    """Write the layout in the module docstring; returns the file names written (relative).

    ``words`` (token strings by id) name the ARPA words; when omitted, or when some token is empty or
    contains whitespace (which ARPA cannot hold, e.g. a character-level " "), the ARPA uses ``<s>``,
    ``</s>``, ``<unk>`` and decimal ids instead; models.json records which (``arpa_words``).
    """
    directory = Path(directory)
    if words is not None and any(not w or re.search(r"\s", w) for w in words):
        words = None
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    if counts is not None:
        written += [f"counts/{p.name}" for p in save_counts(counts, directory / "counts")]
    manifest = {}
    for name, model in models.items():
        write_arpa(model, directory / f"{name}{arpa_suffix}", words)
        model.save(directory / f"{name}.npz")
        written += [f"{name}{arpa_suffix}", f"{name}.npz"]
        manifest[name] = {"order": model.order, "vocab_size": model.vocab_size, "bos_id": model.bos_id,
                          "eos_id": model.eos_id, "unk_id": model.unk_id, "num_ngrams": model.num_ngrams(),
                          "info": model.info}
    data = json.dumps({"models": manifest, "arpa_words": "ids" if words is None else "tokens"}, indent=2).encode()
    atomic_write(directory / "models.json", lambda f: f.write(data))
    return written + ["models.json"]


def load_ngram_models(directory: Path) -> dict[str, BackoffModel]:
    """Inverse of ``save_ngram_models`` (reads the exact ``.npz`` arrays)."""
    directory = Path(directory)
    manifest_path = directory / "models.json"
    if not manifest_path.exists():
        raise StageError(f"{directory} has no models.json: the ngram stage did not finish; rerun it")
    manifest = json.loads(manifest_path.read_text())["models"]
    models = {}
    for name, meta in manifest.items():
        m = BackoffModel.load(directory / f"{name}.npz")
        models[name] = BackoffModel(name, m.order, m.vocab_size, m.bos_id, m.eos_id, m.keys, m.logprob,
                                    m.logbackoff, m.unk_id, meta.get("info", {}))
    return models
