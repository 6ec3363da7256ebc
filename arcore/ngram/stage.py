"""The ngram stage: token shards -> count tables, the histogram and the configured n-gram models.

In: the tokenizer directory and the shards directory. Out, in ``out_dir``: ``counts/order{n}.parquet``
(counted once), ``counts_of_counts.png`` (Zipf's view), ``histogram.npz`` (unigram counts over token ids and the histogram's log-probabilities: the lecture's
estimation by counting, with ``histogram_pseudocount``),
one ``<model>.arpa.gz`` (``arpa`` setting: gzip, plain or none) + ``<model>.binary/`` (memory-mapped, ``arcore.ngram.binary``) per estimator (``models.json`` lists them), and metrics per model on
the valid split (or, with ``max_valid_tokens``, a deterministic sample of whole valid documents: records
``valid_tokens_evaluated`` of ``valid_tokens_total``): perplexity per token and bits per byte
(``arcore.evaluate`` conventions).

The train split is streamed shard by shard into the out-of-core counting passes (``corpus_count``), so
the stage's memory is set by ``memory_budget_mb``, not by the corpus; a ``mapper`` (``arcore.parallel``;
the pipeline's Dask runner) may sort and count the partitions elsewhere.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from arcore.evaluate import evaluate_model, split_counts
from arcore.heldout import sample_documents
from arcore.ngram.fit import ARPA_SUFFIX, COUNTING_JSON, UNIGRAM_COUNTS, NGramConfig, fit_ngram_models, load_ngram_models, save_ngram_models
from arcore.ngram.counts import counts_of_counts, load_counts
from arcore.ngram.histogram import UnigramModel
from arcore.parallel import OptionalMapper
from arcore.shards.manifest import load_complete_manifest
from arcore.ngram.counts import atomic_write
from arcore.shards.reader import iter_shard_ids, read_ids, split_stats
from arcore.stage import Progress, StageOutput
from arcore.tokenize.store import LoadedTokenizer, load_tokenizer

HISTOGRAM_FILE = "histogram.npz"
ZIPF_PNG = "counts_of_counts.png"


def build_ngram(cfg: NGramConfig, tokenizer_dir: Path, shards_dir: Path, out_dir: Path,
                progress: Progress = None, mapper: OptionalMapper = None) -> StageOutput:
    tok = load_tokenizer(tokenizer_dir)
    load_complete_manifest(shards_dir, "train", tok.sha256)
    valid_total = split_stats(shards_dir, "valid").tokens
    if cfg.max_valid_tokens and cfg.max_valid_tokens < valid_total:
        sample = sample_documents(shards_dir, "valid", cfg.max_valid_tokens, tok.sha256)
        valid, valid_counts = sample.ids, sample.counts
    else:
        valid, valid_counts = read_ids(shards_dir, "valid", tok.sha256), split_counts(shards_dir, "valid")

    def train():  # one array per shard, read again for each counting pass: never the whole split at once
        return iter_shard_ids(shards_dir, "train", tok.sha256, verify=False)

    models = fit_ngram_models(cfg, train, valid, tok.vocab_size, tok.bos_id, tok.eos_id, tok.unk_id,
                              work_dir=out_dir, progress=progress, mapper=mapper)
    vocab = [tok.tokenizer.id_to_token(i) for i in range(tok.vocab_size)]
    save_ngram_models(models, out_dir, words=vocab, arpa_suffix=ARPA_SUFFIX[cfg.arpa])
    if cfg.count_tables:
        plot_counts_of_counts(counts_of_counts(load_counts(Path(out_dir) / "counts")), Path(out_dir) / ZIPF_PNG)
    id_counts = np.load(Path(out_dir) / UNIGRAM_COUNTS)
    id_counts[tok.bos_id] = 0  # the tables count <s> once per document; the histogram never predicts it
    histogram = UnigramModel.from_counts(id_counts, tok.bos_id, tok.eos_id, cfg.histogram_pseudocount)
    atomic_write(Path(out_dir) / HISTOGRAM_FILE, lambda f: np.savez(f, counts=id_counts, logprob=histogram.logprob))
    metrics: dict[str, float] = {}
    primary = "kneser-ney" if "kneser-ney" in models else next(iter(models))  # config: at least one model
    records = {f"ngrams_order{n}": int(k) for n, k in enumerate(models[primary].num_ngrams(), 1)}
    counting = json.loads((Path(out_dir) / COUNTING_JSON).read_text())
    records["count_partitions"] = int(counting["partitions"])
    records["valid_tokens_evaluated"], records["valid_tokens_total"] = int(len(valid)), int(valid_total)
    if len(valid):
        everything = {"histogram": histogram, **models}
        for name, model in everything.items():
            ev = evaluate_model(model, valid, valid_counts, tok.unk_id)
            metrics[f"{name}.valid_perplexity"] = ev.perplexity_per_token
            metrics[f"{name}.valid_bits_per_byte"] = ev.bits_per_byte
    return StageOutput(metrics=metrics, records=records,
                       artifacts=("models.json",) + ((ZIPF_PNG,) if cfg.count_tables else ())
                       + ((f"{primary}{ARPA_SUFFIX[cfg.arpa]}",) if cfg.arpa != "none" else ()))


def plot_counts_of_counts(per_order: list, path: Path) -> Path:
    """Zipf's view of the counts: for each order n, how many n-grams (n_r) occur exactly r times, log-log.

    The steep left end (most n-grams are seen once or twice) is why smoothing matters, and n_1..n_4 are
    what the Kneser-Ney discounts are computed from (``kneser_ney_discounts``)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from arcore.io import atomic_write_bytes

    fig = Figure(figsize=(6.4, 4.2), dpi=100)
    canvas = FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    for n, (r, n_r) in enumerate(per_order, 1):
        ax.loglog(r, n_r, marker=".", linestyle="none", label=f"{n}-grams")
    ax.set_xlabel("count r")
    ax.set_ylabel("number of n-grams seen r times (n_r)")
    ax.set_title("Counts of counts (Zipf's view)")
    ax.legend()
    import io

    buf = io.BytesIO()
    canvas.print_png(buf)
    atomic_write_bytes(Path(path), buf.getvalue())
    return Path(path)


def load_histogram(ngram_dir: Path, tok: LoadedTokenizer) -> UnigramModel:
    logprob = np.load(Path(ngram_dir) / HISTOGRAM_FILE)["logprob"]
    return UnigramModel(tok.vocab_size, tok.bos_id, tok.eos_id, logprob)


def load_models(ngram_dir: Path, tok: LoadedTokenizer) -> dict:
    """Every model the stage fitted, by name (``histogram``, ``ngram-<smoothing>``)."""
    models = {"histogram": load_histogram(ngram_dir, tok)}
    models.update({f"ngram-{name}": m for name, m in load_ngram_models(ngram_dir).items()})
    return models
