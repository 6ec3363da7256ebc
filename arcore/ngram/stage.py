"""The ngram stage: token shards -> count tables, the histogram and the configured n-gram models.

In: the tokenizer directory and the shards directory. Out, in ``out_dir``: ``counts/order{n}.parquet``
(counted once), ``histogram.npy`` (unigram counts over token ids, the lecture's estimation by counting),
one ``<model>.arpa`` + ``<model>.npz`` per estimator (``models.json`` lists them), and metrics per model on
the valid split: perplexity per token and bits per byte (``arcore.evaluate`` conventions).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from arcore.evaluate import TextCounts, evaluate_model
from arcore.ngram.fit import NGramConfig, fit_ngram_models, load_ngram_models, save_ngram_models
from arcore.ngram.histogram import UnigramModel
from arcore.shards.reader import read_ids, split_stats
from arcore.stage import Progress, StageOutput
from arcore.tokenize.store import LoadedTokenizer, load_tokenizer

HISTOGRAM_FILE = "histogram.npy"


def split_counts(shards_dir: Path, split: str) -> TextCounts:
    s = split_stats(shards_dir, split)
    return TextCounts(source_bytes=s.source_bytes, words=s.words, documents=s.documents)


def build_ngram(cfg: NGramConfig, tokenizer_dir: Path, shards_dir: Path, out_dir: Path,
                progress: Progress = None) -> StageOutput:
    tok = load_tokenizer(tokenizer_dir)
    train = read_ids(shards_dir, "train", tok.sha256)
    valid = read_ids(shards_dir, "valid", tok.sha256)
    models = fit_ngram_models(cfg, train, valid, tok.vocab_size, tok.bos_id, tok.eos_id, tok.unk_id,
                              work_dir=out_dir, progress=progress)
    vocab = [tok.tokenizer.id_to_token(i) for i in range(tok.vocab_size)]
    save_ngram_models(models, out_dir, words=vocab)
    counts = np.bincount(np.asarray(train, dtype=np.int64), minlength=tok.vocab_size)
    np.save(out_dir / HISTOGRAM_FILE, counts)
    metrics: dict[str, float] = {}
    records = {f"ngrams_order{n}": int(k) for n, k in enumerate(next(iter(models.values())).num_ngrams(), 1)} \
        if models else {}
    if len(valid):
        valid_counts = split_counts(shards_dir, "valid")
        everything = {"histogram": load_histogram(out_dir, tok, cfg.histogram_pseudocount), **models}
        for name, model in everything.items():
            ev = evaluate_model(model, valid, valid_counts, tok.unk_id)
            metrics[f"{name}.valid_perplexity"] = ev.perplexity_per_token
            metrics[f"{name}.valid_bits_per_byte"] = ev.bits_per_byte
    return StageOutput(metrics=metrics, records=records, artifacts=("models.json",))


def load_histogram(ngram_dir: Path, tok: LoadedTokenizer, pseudocount: float) -> UnigramModel:
    """The unigram histogram from its saved counts: p(w) = (c(w) + pseudocount) / sum, ``<s>`` excluded
    (same estimate as ``UnigramModel.fit``, without re-reading the ids)."""
    counts = np.load(Path(ngram_dir) / HISTOGRAM_FILE).astype(np.float64) + pseudocount
    counts[tok.bos_id] = 0.0
    with np.errstate(divide="ignore"):
        logprob = np.log(counts / counts.sum())
    return UnigramModel(tok.vocab_size, tok.bos_id, tok.eos_id, logprob)


def load_models(ngram_dir: Path, tok: LoadedTokenizer, cfg: NGramConfig) -> dict:
    """Every model the stage fitted, by name, histogram included."""
    return {"histogram": load_histogram(ngram_dir, tok, cfg.histogram_pseudocount), **load_ngram_models(ngram_dir)}
