"""The infinigram stage: token shards -> a suffix-array index of the train split and the infini-gram model.

In: the tokenizer directory and the shards directory. Out, in ``out_dir``: ``reversed_ids.npy`` (the train
stream ``<s> doc </s> ...`` reversed) and ``suffix_array.npy`` (``arcore.infinigram.index``; both memory-mapped
at load), ``infinigram.json`` (settings, the EM weights per bucket, counts). Metrics on the valid split:
bits per byte and perplexity (``arcore.evaluate`` conventions), the fraction of sparse estimates, how often
the most likely continuation at the longest matching suffix is the actual next token (overall and on
sparse estimates: the paper's agreement figure), the mean effective n, and the build's seconds.

Its own model stage, not part of ``ngram``: it shares no computation with the count tables (its input is
the raw stream, its output one index for every n), its cost is O(tokens) where the n-gram stage's is
O(distinct n-grams), and a change of ``ngram.order`` or smoothing must not rebuild it.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import numpy as np

from arcore.evaluate import evaluate_model, split_counts
from arcore.infinigram.config import InfiniGramConfig
from arcore.infinigram.index import REVERSED_IDS, SUFFIX_ARRAY, SuffixIndex, write_reversed_stream, write_suffix_array
from arcore.infinigram.model import Estimates, InfiniGramModel, bucket_of
from arcore.io import atomic_write_json
from arcore.mixture import fit_mixture_weights
from arcore.ngram.histogram import UnigramModel
from arcore.shards.manifest import load_complete_manifest
from arcore.shards.reader import iter_shard_ids, read_ids
from arcore.errors import StageError
from arcore.stage import Progress, StageOutput
from arcore.tokenize.store import LoadedTokenizer, load_tokenizer

MODEL_JSON = "infinigram.json"


def build_index(tokenizer_dir: Path, shards_dir: Path, out_dir: Path) -> dict[str, float]:
    """Write the reversed stream and its suffix array into ``out_dir``; returns timings and sizes."""
    tok = load_tokenizer(tokenizer_dir)
    manifest = load_complete_manifest(shards_dir, "train", tok.sha256)
    t0 = time.perf_counter()
    n = write_reversed_stream(iter_shard_ids(shards_dir, "train", tok.sha256, verify=False), manifest.tokens,
                              manifest.documents, tok.vocab_size, tok.bos_id, tok.eos_id, Path(out_dir) / REVERSED_IDS)
    t1 = time.perf_counter()
    write_suffix_array(Path(out_dir) / REVERSED_IDS, Path(out_dir) / SUFFIX_ARRAY)
    return {"stream_seconds": t1 - t0, "suffix_array_seconds": time.perf_counter() - t1, "stream_tokens": float(n)}


def fit_weights(model: InfiniGramModel, e: Estimates, iterations: int) -> np.ndarray:
    """lambda of P_inf per bucket by EM on the held-out estimates ``e``; a bucket no held-out token falls in
    takes the weight fit on all matched tokens of its sparsity."""
    buckets = bucket_of(e.matched, e.sparse, model.length_buckets)
    weights = np.full(2 * model.length_buckets, 0.5)
    matched = e.matched > 0
    for is_sparse in (False, True):
        pooled = matched & (e.sparse == is_sparse)
        if pooled.any():
            weights[int(is_sparse) * model.length_buckets:(int(is_sparse) + 1) * model.length_buckets] = \
                fit_mixture_weights(np.column_stack([e.p_uni[pooled], e.p_inf[pooled]]), iterations)[1]
    for b in np.unique(buckets[matched]):
        rows = matched & (buckets == b)
        weights[b] = fit_mixture_weights(np.column_stack([e.p_uni[rows], e.p_inf[rows]]), iterations)[1]
    return weights


def argmax_agreement(model: InfiniGramModel, ids: np.ndarray, e: Estimates) -> float:
    """How often the most likely continuation at the longest matching suffix is the actual next token."""
    from arcore.ngram.counts import with_bos

    ext, offset = with_bos(ids, model.bos_id, model.eos_id)
    targets = np.flatnonzero(offset > 0)
    context_len = np.minimum(offset[targets], model.max_suffix)
    _, lo, hi = model.index.match(lambda k, rows: ext[targets[rows] - 1 - k], context_len)
    best: dict[tuple[int, int], int] = {}
    right = 0
    for i in np.flatnonzero(e.matched > 0):
        key = (int(lo[i]), int(hi[i]))
        if key not in best:
            best[key] = int(np.argmax(model.index.continuations(key[0], key[1], model.vocab_size)))
        right += best[key] == int(ext[targets[i]])
    return right / max(1, targets.size)


def build_infinigram(cfg: InfiniGramConfig, tokenizer_dir: Path, shards_dir: Path, out_dir: Path,
                     progress: Progress = None) -> StageOutput:
    tok = load_tokenizer(tokenizer_dir)
    timings = build_index(tokenizer_dir, shards_dir, out_dir)
    index = SuffixIndex.open(out_dir, tok.vocab_size)
    fallback = UnigramModel.from_counts(index.token_counts(), tok.bos_id, tok.eos_id, cfg.pseudocount)
    unfitted = InfiniGramModel(index, tok.vocab_size, tok.bos_id, tok.eos_id, cfg.max_suffix_tokens, fallback,
                               np.full(2 * cfg.length_buckets, 0.5), cfg.length_buckets)
    valid = read_ids(shards_dir, "valid", tok.sha256)
    metrics: dict[str, float] = {k: v for k, v in timings.items() if k.endswith("seconds")}
    weights = unfitted.weights
    if len(valid):
        t0 = time.perf_counter()
        e = unfitted.estimates(valid)
        weights = fit_weights(unfitted, e, cfg.em_iterations)
        model = dataclasses.replace(unfitted, weights=weights)
        ev = evaluate_model(model, valid, split_counts(shards_dir, "valid"), tok.unk_id)
        metrics.update({
            "valid_bits_per_byte": ev.bits_per_byte, "valid_perplexity": ev.perplexity_per_token,
            "valid_sparse_fraction": float(np.mean(e.sparse)),
            "valid_sparse_agreement": float(np.mean(e.p_inf[e.sparse] == 1.0)) if e.sparse.any() else 0.0,
            "valid_argmax_agreement": argmax_agreement(model, valid, e),
            "valid_mean_effective_n": float(np.mean(e.matched + 1)),
            "fit_seconds": time.perf_counter() - t0,
        })
    atomic_write_json(Path(out_dir) / MODEL_JSON, {
        "config": cfg.model_dump(mode="json"), "weights": weights.tolist(), "vocab_size": tok.vocab_size,
        "stream_tokens": index.size, "documents": int(index.token_counts()[tok.bos_id]),
    })
    records = {"stream_tokens": index.size, "documents": int(index.token_counts()[tok.bos_id])}
    return StageOutput(metrics=metrics, records=records, artifacts=(MODEL_JSON,))


def load_infinigram(stage_dir: Path, tok: LoadedTokenizer) -> InfiniGramModel:
    stage_dir = Path(stage_dir)
    try:
        meta = json.loads((stage_dir / MODEL_JSON).read_text())
    except (OSError, ValueError) as e:
        raise StageError(f"cannot read {stage_dir / MODEL_JSON}: {e}; rerun the infinigram stage") from None
    if meta["vocab_size"] != tok.vocab_size:
        raise StageError(f"the infinigram index in {stage_dir} was built for {meta['vocab_size']} token ids, the "
                         f"tokenizer has {tok.vocab_size}; load it with the tokenizer it was built with")
    cfg = InfiniGramConfig.model_validate(meta["config"])
    index = SuffixIndex.open(stage_dir, tok.vocab_size)
    fallback = UnigramModel.from_counts(index.token_counts(), tok.bos_id, tok.eos_id, cfg.pseudocount)
    return InfiniGramModel(index, tok.vocab_size, tok.bos_id, tok.eos_id, cfg.max_suffix_tokens, fallback,
                           np.asarray(meta["weights"], dtype=np.float64), cfg.length_buckets)
