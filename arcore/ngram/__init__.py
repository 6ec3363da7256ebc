"""Count-based n-gram language models: counting at scale, smoothing, Kneser-Ney equal to KenLM, ARPA.

Data flow (one module per step)::

    ids (shard layout) --count_ngrams--> NGramCounts --NGramIndex--> estimators --> BackoffModel
                                                                                    |-- write_arpa / read_arpa
                                                                                    `-- score / next_logprobs

Out of core (what the stage and ``arpipe ngram estimate`` run; bounded by the memory budget, KenLM's
``lm/builder`` order)::

    shard stream --corpus_count--> CountTables (.npy on disk) --adjust_counts--> suffix rows, continuation
    counts --discounts--> interpolate (Kneser-Ney, order by order) --> binary.BinaryModelWriter (memory-mapped)

- ``diskarray``: ``.npy`` files appended and read in slices, blocked gather/lookup, streamed bincount.
- ``binary``: the memory-mapped model (``BinaryModelWriter``, ``save_binary``, ``load_binary``; KenLM's
  probing binary is the anchor) that scoring, evaluation and generation load in milliseconds.
- ``corpus_count``, ``adjust_counts``, ``interpolate``: the passes, one module each; ``streamed``: what the
  streamed MLE/add-k (``additive.stream_*``), Katz (``katz.stream_katz``) and interpolated
  (``interpolation.stream_interpolated``) estimators share, each beside its in-memory reference.
- ``text``: ``arpipe ngram estimate`` (lmplz's job) and ``score`` (query's) on whitespace text, streamed.
- ``counts``: ``count_ngrams`` (in memory: vectorized map over chunks, reduce merge), Parquet tables; with
  ``index`` and the estimators below it is the in-memory reference the passes are tested against.
- ``index``: integer keys ``row(prefix) * V + word`` shared by every estimator.
- ``histogram``: ``Histogram`` over a finite set and ``UnigramModel``.
- ``additive`` (MLE, add-k/Laplace), ``interpolation`` (Jelinek-Mercer, EM), ``katz`` (Good-Turing),
  ``kneser_ney`` (interpolated modified Kneser-Ney exactly as lmplz).
- ``backoff``: ``BackoffModel``, the ``arcore.lm.LanguageModel`` all estimators return; ``probing``: its hash.
- ``arpa``: ARPA export/import; ``query``: KenLM query's perplexity conventions; ``text``: whitespace text.
- ``fit``: ``NGramConfig``, ``fit_ngram_models``, ``save_ngram_models`` / ``load_ngram_models``.
"""

from arcore.ngram.additive import estimate_add_k, estimate_mle
from arcore.ngram.arpa import read_arpa, write_arpa
from arcore.ngram.backoff import BackoffModel
from arcore.ngram.binary import BinaryModelWriter, load_binary, save_binary
from arcore.ngram.counts import NGramCounts, count_ngrams, counts_of_counts, load_counts, save_counts
from arcore.ngram.fit import NGramConfig, estimate, fit_ngram_models, load_ngram_models, save_ngram_models
from arcore.ngram.histogram import Histogram, UnigramModel
from arcore.ngram.index import NGramIndex
from arcore.ngram.interpolation import estimate_interpolated
from arcore.ngram.katz import estimate_katz
from arcore.ngram.kneser_ney import Discounts, adjust_counts, estimate_kneser_ney, kneser_ney_discounts
from arcore.ngram.query import QueryResult, bits_per_byte, query

__all__ = [
    "BackoffModel", "BinaryModelWriter", "Discounts", "Histogram", "NGramConfig", "NGramCounts", "NGramIndex", "QueryResult",
    "UnigramModel", "adjust_counts", "bits_per_byte", "count_ngrams", "counts_of_counts", "estimate", "estimate_add_k",
    "estimate_interpolated", "estimate_katz", "estimate_kneser_ney", "estimate_mle", "fit_ngram_models",
    "kneser_ney_discounts", "load_binary", "load_counts", "load_ngram_models", "query", "read_arpa", "save_counts",
    "save_binary", "save_ngram_models", "write_arpa",
]
