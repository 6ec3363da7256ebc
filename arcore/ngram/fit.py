"""NGramConfig and fit_ngram_models: count once, estimate every configured model, save and reload them.

Input: train and valid ids (shard layout), the tokenizer's vocabulary size and special ids, a work
directory. Output: ``{name: BackoffModel}``; ``save_ngram_models`` writes a directory the pipeline stage
can commit and ``load_ngram_models`` reads back::

    <dir>/counts/order{n}.parquet      raw count tables (columns w1..wn, count), when ``count_tables``
    <dir>/<name>.arpa                  the portable model (KenLM loads it; ``arpa_suffix=".arpa.gz"``
                                       writes it gzip-compressed, as the pipeline stage does)
    <dir>/<name>.binary/               exact float64 arrays and probing tables, memory-mapped by
                                       load_ngram_models (``arcore.ngram.binary``)
    <dir>/models.json                  written last: names, order, vocabulary, per-model info

How ``fit_ngram_models`` stays within ``memory_budget_mb`` (the out-of-core passes, KenLM's
``lm/builder`` order): ``corpus_count`` -> ``adjust_counts`` -> every configured estimator streamed over
the sorted tables on disk (``interpolate_kneser_ney``, ``stream_mle``, ``stream_add_k``, ``stream_katz``,
``stream_interpolated``), each writing its binary model order by order. The budget counts the whole
process: what it already holds when the fit starts is subtracted first. No in-memory ``NGramIndex`` is
built; the streamed estimators equal the in-memory ones (``estimate``) bit for bit. Held in memory besides
one chunk of rows: dense per-id arrays (V) and, for interpolated, the valid split's EM components.

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
from arcore.ngram.additive import estimate_add_k, estimate_mle, stream_add_k, stream_mle
from arcore.ngram.arpa import write_arpa
from arcore.ngram.backoff import BackoffModel
from arcore.ngram.adjust_counts import adjust_counts, counts_of_counts
from arcore.ngram.binary import BinaryModelWriter, load_binary, save_binary
from arcore.ngram.corpus_count import CountTables, Stream, corpus_count
from arcore.ngram.counts import NGramCounts, atomic_write, save_counts
from arcore.ngram.diskarray import release_memory, working_budget, write_npy
from arcore.ngram.heap import reuse_freed_memory
from arcore.ngram.index import NGramIndex
from arcore.ngram.interpolate import interpolate_kneser_ney
from arcore.ngram.interpolation import estimate_interpolated, stream_interpolated
from arcore.ngram.katz import estimate_katz, stream_katz
from arcore.ngram.kneser_ney import discounts_from_counts_of_counts, estimate_kneser_ney
from arcore.parallel import OptionalMapper

Smoothing = Literal["mle", "laplace", "add-k", "interpolated", "katz", "kneser-ney"]
SMOOTHINGS: tuple[str, ...] = ("mle", "laplace", "add-k", "interpolated", "katz", "kneser-ney")


class NGramConfig(BaseModel):
    """The ``ngram`` stage's section of the pipeline config."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    order: int = Field(5, ge=1, le=10, description="highest n-gram order")
    models: list[Smoothing] = Field(default_factory=lambda: ["kneser-ney", "laplace", "interpolated"],
                                    min_length=1, description="estimators to fit, by smoothing name")
    memory_budget_mb: int = Field(1024, ge=16, description="peak memory of the stage's process (MiB): counting "
                                  "and Kneser-Ney estimation stream sorted arrays on disk to stay within it")
    partition_windows: Optional[int] = Field(
        None, ge=1, description="windows per counting partition (one map piece, one Dask task each); default: "
        "as many as the memory budget holds")
    arpa: Literal["gzip", "plain", "none"] = Field(
        "gzip", description="ARPA copy of each model beside its binary: <name>.arpa.gz, <name>.arpa, or none "
        "(at scale the text file is the slowest output: lmplz writes it plain)")
    max_valid_tokens: Optional[int] = Field(
        None, ge=0, description="score the valid split (and fit the interpolated model's weights) on a "
        "deterministic sample of whole valid documents holding at most that many tokens "
        "(arcore.heldout.sample_documents); None or 0: the whole split")
    count_tables: bool = Field(True, description="also write the count tables as Parquet (counts/order{n}"
                               ".parquet, columns w1..wn, count) for DuckDB/Polars; costs time at scale")
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


def fit_ngram_models(cfg: NGramConfig, train: np.ndarray | Stream, valid_ids: np.ndarray, vocab_size: int,
                     bos_id: int, eos_id: int, unk_id: int | None, work_dir: Path,
                     progress: Callable[[int, Optional[int]], None] | None = None,
                     mapper: OptionalMapper = None) -> dict[str, BackoffModel]:
    """Count ``train`` once and estimate ``cfg.models``; returns the models by name.

    ``train``: token ids (shard layout), or a callable returning an iterable of such arrays (whole
    documents each; called twice), e.g. one array per shard. ``mapper`` runs the counting's map step
    (``corpus_count.count_partition``) elsewhere; it changes where the work happens, never the models.

    Every model is written to ``work_dir/<name>.binary`` and returned memory-mapped from there; the
    count tables are written to ``work_dir/counts/order{n}.parquet`` when ``cfg.count_tables``.
    """
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    budget = working_budget(cfg.memory_budget_mb << 20)
    stream = train if callable(train) else (lambda: [np.asarray(train)])
    tables_dir = work_dir / "tables"
    with reuse_freed_memory():  # each pass's chunks reuse the pages of the chunk before (arcore.ngram.heap)
        tables = corpus_count(stream, cfg.order, vocab_size, bos_id, eos_id, tables_dir,
                              memory_budget_bytes=budget, progress=progress,
                              parquet_dir=work_dir / "counts" if cfg.count_tables else None,
                              mapper=mapper, partition_windows=cfg.partition_windows)
        release_memory()
        adjust_counts(tables, budget)
        release_memory()
        models = {}
        for name in cfg.models:
            models[name] = _estimate_binary(name, tables, cfg, valid_ids, unk_id, work_dir, budget)
            release_memory()
    write_npy(work_dir / UNIGRAM_COUNTS, tables.unigram_counts())
    atomic_write(work_dir / COUNTING_JSON, lambda f: f.write(json.dumps(
        {"tokens": tables.tokens, "partitions": tables.partitions, "working_budget_bytes": budget}).encode()))
    shutil.rmtree(tables_dir, ignore_errors=True)
    return models


COUNTING_JSON = ".counting.json"  # how the counting ran (partitions follow the budget left): not in the digest


UNIGRAM_COUNTS = "unigram_counts.npy"


def _estimate_binary(name: str, tables: CountTables, cfg: NGramConfig, valid_ids: np.ndarray | None,
                     unk_id: int | None, work_dir: Path, budget: int,
                     weights: Sequence[float] | None = None) -> BackoffModel:
    """Stream estimator ``name`` over ``tables`` into ``work_dir/<name>.binary``; returns it memory-mapped."""
    if name not in SMOOTHINGS:
        raise ConfigError(f"unknown smoothing {name!r}; choose one of {', '.join(SMOOTHINGS)}")
    if name == "interpolated" and valid_ids is None and weights is None:
        raise ConfigError("interpolated smoothing needs held-out ids to fit its weights")
    target, scratch = work_dir / f"{name}.binary", work_dir / f"{name}.passes"
    shutil.rmtree(target, ignore_errors=True)
    writer = BinaryModelWriter(target, name=name, order=tables.order, vocab_size=tables.vocab_size,
                               bos_id=tables.bos_id, eos_id=tables.eos_id, unk_id=unk_id,
                               memory_budget_bytes=budget)
    try:
        if name == "kneser-ney":
            coc = [counts_of_counts(tables, n, budget) for n in range(1, tables.order + 1)]
            discounts = discounts_from_counts_of_counts(coc, cfg.discount_fallback)
            interpolate_kneser_ney(tables, discounts, writer, scratch, budget)
        elif name == "mle":
            stream_mle(tables, writer, scratch, budget)
        elif name in ("laplace", "add-k"):
            stream_add_k(tables, writer, scratch, budget, 1.0 if name == "laplace" else cfg.add_k)
        elif name == "katz":
            stream_katz(tables, writer, scratch, budget, cfg.katz_max_count)
        else:
            stream_interpolated(tables, valid_ids, writer, scratch, budget, weights=weights)
    except BaseException:
        writer.abort()
        raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return load_binary(target)


def _kneser_ney_binary(tables: CountTables, cfg: NGramConfig, unk_id: int | None, work_dir: Path,
                       budget: int) -> BackoffModel:
    """Kneser-Ney into ``work_dir/kneser-ney.binary`` (what ``arpipe ngram estimate`` runs)."""
    return _estimate_binary("kneser-ney", tables, cfg, None, unk_id, work_dir, budget)


ARPA_SUFFIX = {"gzip": ".arpa.gz", "plain": ".arpa", "none": None}


def save_ngram_models(models: dict[str, BackoffModel], directory: Path, counts: NGramCounts | None = None,
                      words: Sequence[str] | None = None, arpa_suffix: str | None = ".arpa") -> list[str]:
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
        if arpa_suffix is not None:
            write_arpa(model, directory / f"{name}{arpa_suffix}", words)
            written.append(f"{name}{arpa_suffix}")
        binary = directory / f"{name}.binary"
        if not _is_stored_at(model, binary):
            shutil.rmtree(binary, ignore_errors=True)
            save_binary(model, binary)
        written.append(f"{name}.binary")
        manifest[name] = {"order": model.order, "vocab_size": model.vocab_size, "bos_id": model.bos_id,
                          "eos_id": model.eos_id, "unk_id": model.unk_id, "num_ngrams": model.num_ngrams(),
                          "info": model.info}
    data = json.dumps({"models": manifest, "arpa_words": "ids" if words is None else "tokens"}, indent=2).encode()
    atomic_write(directory / "models.json", lambda f: f.write(data))
    return written + ["models.json"]


def _is_stored_at(model: BackoffModel, binary: Path) -> bool:
    """Whether ``model`` is the memory-mapped model of ``binary`` (then there is nothing to save)."""
    first = model.logprob[0]
    name = getattr(first, "filename", None) or getattr(getattr(first, "base", None), "filename", None)
    return name is not None and Path(name).resolve().parent == binary.resolve()


def load_ngram_models(directory: Path) -> dict[str, BackoffModel]:
    """Inverse of ``save_ngram_models`` (memory-maps the exact binary models)."""
    directory = Path(directory)
    manifest_path = directory / "models.json"
    if not manifest_path.exists():
        raise StageError(f"{directory} has no models.json: the ngram stage did not finish; rerun it")
    manifest = json.loads(manifest_path.read_text())["models"]
    models = {}
    for name, meta in manifest.items():
        m = load_binary(directory / f"{name}.binary")
        # tables=: the binary's mapped probing tables; without them the first score built every order's
        # hash table in memory (evaluate at 1 GB of text: 15.5 GB peak for a 14.7 GB model directory)
        models[name] = BackoffModel(name, m.order, m.vocab_size, m.bos_id, m.eos_id, m.keys, m.logprob,
                                    m.logbackoff, m.unk_id, meta.get("info", {}), tables=m.tables)
    return models
