"""Evaluation: how well a ``LanguageModel`` predicts held-out documents, in units comparable across models.

Input: a model (``arcore.lm``), the split's token ids in the shard layout (documents back to back, each
ending with ``</s>``) and the split's ``TextCounts`` (bytes, words, documents of the source text, counted
by ``count_text``). The ids come as one array (``evaluate_model``) or as parts arriving one shard at a time
(``evaluate_stream``: memory is one shard and one chunk, whatever the split's size); both score the same
chunks of whole documents (``document_chunks``, ``iter_document_chunks``) and sum them in the same order,
so they give the same floats. Output: a frozen ``Evaluation`` with ``as_dict()``; ``compare_models`` lays
several side by side and ``plot_bits_per_byte`` draws the bar chart the evaluate stage logs. Scoring a
deterministic sample of whole documents instead of a whole split: ``arcore.heldout``.

Conventions (they change the numbers, so they are fixed here for every model):
- Predicted tokens are every id in ``ids``: each document's tokens and its ``</s>``. ``<s>`` is context
  only (the model's ``initial_state``), never predicted, never counted. Log-probs are natural logs.
- ``total_nll = -sum_t log P(x_t | x_<t)`` over the predicted tokens, in nats.
- ``nll_per_token = total_nll / tokens``; ``perplexity_per_token = exp(nll_per_token)``. Depends on the
  tokenizer, so only comparable between models sharing one.
- ``perplexity_per_word = exp(total_nll / (words + documents))``: words are whitespace-separated words
  of the source text (``str.split()``), plus one end-of-sentence per document, as KenLM and the WikiText
  papers count. Comparable across tokenizers that cover the same text.
- ``bits_per_byte = total_nll / (ln 2 * source_bytes)``, ``source_bytes = sum(len(text.encode("utf-8"))
  + 1)`` over documents: the +1 is the document boundary that ``</s>`` predicts. The compression rate of
  the text under the model (an arithmetic coder driven by it needs this many bits per byte); comparable
  across tokenizers.
- ``oov_rate = (ids == unk_id).sum() / tokens``: the fraction of predicted tokens (``</s>`` included) that
  are ``<unk>``. ``<unk>`` targets stay in every figure above (KenLM's "incl. OOV" convention); a model
  that predicts ``<unk>`` cheaply looks better than it is, which this rate exposes.
  ``perplexity_per_token_excl_oov`` drops them from both the NLL sum and the count (KenLM's "excl. OOV").
- A token of probability 0 makes the NLL infinite; the figures are then ``inf`` and
  ``zero_probability_tokens`` says how many, rather than silently skipping them.

Worked example: a uniform model over V = 4 tokens scoring 2 documents, ``"a b"`` and ``"c"``, tokenized as
``[a, b, </s>, c, </s>]``: total_nll = 5 ln 4 = 6.931; nll_per_token = ln 4; perplexity_per_token = 4;
words + documents = 3 + 2, perplexity_per_word = exp(5 ln 4 / 5) = 4; source_bytes = (3 + 1) + (1 + 1)
= 6, bits_per_byte = 5 ln 4 / (6 ln 2) = 10 / 6 = 1.667.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable, Iterator, Mapping, Optional

import numpy as np

from arcore.errors import InputError
from arcore.io import atomic_write_with
from arcore.lm import LanguageModel
from arcore.stage import Progress

# Documents are scored in chunks of about this many tokens (cut at document boundaries), bounding the
# memory an RNN's score() needs for a whole split.
DEFAULT_CHUNK_TOKENS = 1 << 18


@dataclass(frozen=True)
class TextCounts:
    """Counts of a split's source text that the per-word and per-byte figures divide by.

    source_bytes: sum over documents of ``len(text.encode("utf-8")) + 1``.
    words: sum over documents of ``len(text.split())``. documents: number of documents.
    """

    source_bytes: int
    words: int
    documents: int


def split_counts(shards_dir: Path, split: str) -> TextCounts:
    """The denominators of a shards split, from its manifest (counted as ``TextCounts`` says)."""
    from arcore.shards.reader import split_stats

    s = split_stats(shards_dir, split)
    return TextCounts(source_bytes=s.source_bytes, words=s.words, documents=s.documents)


def count_text(texts: Iterable[str]) -> TextCounts:
    """``count_text(["a b", "c"]) -> TextCounts(source_bytes=6, words=3, documents=2)``."""
    source_bytes = words = documents = 0
    for text in texts:
        source_bytes += len(text.encode("utf-8")) + 1
        words += len(text.split())
        documents += 1
    return TextCounts(source_bytes=source_bytes, words=words, documents=documents)


@dataclass(frozen=True)
class Evaluation:
    """One model's figures on one split; conventions in the module docstring."""

    nll_per_token: float
    perplexity_per_token: float
    perplexity_per_word: float
    bits_per_byte: float
    oov_rate: float
    perplexity_per_token_excl_oov: float
    total_nll: float
    tokens: int
    words: int
    documents: int
    source_bytes: int
    oov_tokens: int
    zero_probability_tokens: int

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)


def _exp(x: float) -> float:
    return math.exp(x) if x < 709.0 else math.inf


def document_chunks(ids: np.ndarray, eos_id: int, chunk_tokens: int) -> list[tuple[int, int]]:
    """``(start, stop)`` spans of whole documents holding about ``chunk_tokens`` tokens each (a longer
    document gets a span of its own). ``document_chunks([5, 1, 6, 1, 7, 1], 1, 4) -> [(0, 4), (4, 6)]``."""
    ends = np.flatnonzero(np.asarray(ids) == eos_id) + 1
    spans, start = [], 0
    while start < len(ids):
        last_fitting = int(np.searchsorted(ends, start + chunk_tokens, side="right")) - 1
        first_after = int(np.searchsorted(ends, start, side="right"))
        stop = int(ends[max(last_fitting, first_after)])
        spans.append((start, stop))
        start = stop
    return spans


def iter_document_chunks(parts: Iterable[np.ndarray], eos_id: int, chunk_tokens: int) -> Iterator[np.ndarray]:
    """The chunks ``document_chunks`` cuts from the concatenation of ``parts``, as int64 arrays, reading one
    part at a time (a chunk may span parts). Raises ``InputError`` when the ids do not end with ``</s>``.

    ``[c.tolist() for c in iter_document_chunks([[5, 1, 6], [1, 7, 1]], 1, 4)] -> [[5, 1, 6, 1], [7, 1]]``.
    """
    buf = np.zeros(0, dtype=np.int64)
    parts = iter(parts)
    more = True
    while more:
        part = next(parts, None)
        more = part is not None
        if more:
            part = np.asarray(part).ravel()
            if not part.size:
                continue
            buf = np.concatenate([buf, part]) if buf.size else part
        ends = np.flatnonzero(buf == eos_id) + 1
        start = 0
        while True:
            first_after = int(np.searchsorted(ends, start, side="right"))
            if first_after == len(ends):
                break
            # Final only once no later end can still fit: one is known past the budget, or the buffer is.
            if more and ends[-1] <= start + chunk_tokens and buf.size < start + chunk_tokens:
                break
            last_fitting = int(np.searchsorted(ends, start + chunk_tokens, side="right")) - 1
            stop = int(ends[max(last_fitting, first_after)])
            yield buf[start:stop].astype(np.int64)
            start = stop
        buf = buf[start:]
    if buf.size:
        raise InputError(f"the last token is id {int(buf[-1])}, not </s> (id {eos_id}); every document "
                         "must end with </s>: rebuild the shards")


@dataclass
class _Totals:
    """Running sums over scored chunks (``Evaluation``'s numerators and counts)."""

    total_nll: float = 0.0
    in_vocab_nll: float = 0.0
    zero: int = 0
    tokens: int = 0
    oov_tokens: int = 0
    documents: int = 0

    def add(self, model: LanguageModel, chunk: np.ndarray, unk_id: int) -> None:
        nll = -np.asarray(model.score(chunk), dtype=np.float64)
        if nll.shape != (chunk.size,):
            raise InputError(f"the model scored {nll.shape} values for {chunk.size} tokens; its score() "
                             "breaks the LanguageModel contract")
        is_unk = chunk == unk_id
        self.zero += int(np.count_nonzero(np.isposinf(nll)))
        self.total_nll += float(np.sum(nll))
        self.in_vocab_nll += float(np.sum(nll[~is_unk]))
        self.tokens += int(chunk.size)
        self.oov_tokens += int(np.count_nonzero(is_unk))
        self.documents += int(np.count_nonzero(chunk == model.eos_id))

    def evaluation(self, counts: TextCounts) -> Evaluation:
        tokens, in_vocab = self.tokens, self.tokens - self.oov_tokens
        return Evaluation(
            nll_per_token=self.total_nll / tokens,
            perplexity_per_token=_exp(self.total_nll / tokens),
            perplexity_per_word=_exp(self.total_nll / (counts.words + counts.documents)),
            bits_per_byte=self.total_nll / (math.log(2) * counts.source_bytes),
            oov_rate=self.oov_tokens / tokens,
            perplexity_per_token_excl_oov=_exp(self.in_vocab_nll / in_vocab) if in_vocab else math.nan,
            total_nll=self.total_nll,
            tokens=tokens,
            words=counts.words,
            documents=counts.documents,
            source_bytes=counts.source_bytes,
            oov_tokens=self.oov_tokens,
            zero_probability_tokens=self.zero,
        )


def _check_vocabulary(ids: np.ndarray, model: LanguageModel) -> None:
    if ids.min() < 0 or ids.max() >= model.vocab_size:
        raise InputError(f"token ids span [{int(ids.min())}, {int(ids.max())}] but the model's vocabulary has "
                         f"{model.vocab_size} ids; evaluate with the tokenizer the model was trained with")


def _check_documents(documents: int, counts: TextCounts) -> None:
    if documents != counts.documents:
        raise InputError(f"the ids hold {documents} documents but the text counts say {counts.documents}; "
                         "pass the counts of the same split and tokenizer run")


def _check_bytes(counts: TextCounts) -> None:
    if counts.source_bytes <= 0:
        raise InputError("source_bytes must be positive; count the split's text with count_text")


def evaluate_model(model: LanguageModel, ids: np.ndarray, counts: TextCounts, unk_id: int,
                   chunk_tokens: int = DEFAULT_CHUNK_TOKENS, progress: Progress = None) -> Evaluation:
    """Score ``ids`` (whole documents, each ending with ``</s>``) under ``model``; see the module docstring.

    Raises ``InputError`` when ``ids`` is empty, does not end with ``</s>``, holds ids outside the
    vocabulary, or holds a different number of documents than ``counts`` says (a sign the counts come
    from another split or tokenizer run). Only one chunk at a time is converted to int64.
    """
    ids = np.asarray(ids).ravel()
    if ids.size == 0:
        raise InputError("no tokens to evaluate: the split is empty; check the shards stage output")
    if ids[-1] != model.eos_id:
        raise InputError(f"the last token is id {int(ids[-1])}, not </s> (id {model.eos_id}); every document "
                         "must end with </s>: rebuild the shards")
    _check_vocabulary(ids, model)
    _check_documents(int(np.count_nonzero(ids == model.eos_id)), counts)
    _check_bytes(counts)

    spans = document_chunks(ids, model.eos_id, max(1, int(chunk_tokens)))
    totals = _Totals()
    for done, (start, stop) in enumerate(spans, 1):
        totals.add(model, ids[start:stop].astype(np.int64), unk_id)
        if progress is not None:
            progress(done, len(spans))
    return totals.evaluation(counts)


def evaluate_stream(model: LanguageModel, parts: Iterable[np.ndarray], counts: TextCounts, unk_id: int,
                    chunk_tokens: int = DEFAULT_CHUNK_TOKENS, progress: Progress = None) -> Evaluation:
    """``evaluate_model`` over ids arriving in ``parts`` (e.g. ``arcore.shards.reader.iter_shard_ids``), equal
    to it on their concatenation; the same refusals, the document count checked once every part is read."""
    _check_bytes(counts)
    totals = _Totals()
    for done, chunk in enumerate(iter_document_chunks(parts, model.eos_id, max(1, int(chunk_tokens))), 1):
        _check_vocabulary(chunk, model)
        totals.add(model, chunk, unk_id)
        if progress is not None:
            progress(done, None)
    if totals.tokens == 0:
        raise InputError("no tokens to evaluate: the split is empty; check the shards stage output")
    _check_documents(totals.documents, counts)
    return totals.evaluation(counts)


# Columns of the comparison table, in order; the first figure is the one comparable across tokenizers.
TABLE_COLUMNS = ("model", "bits_per_byte", "perplexity_per_word", "perplexity_per_token", "nll_per_token",
                 "oov_rate", "perplexity_per_token_excl_oov", "tokens", "zero_probability_tokens")


def _figures(result: Evaluation | Mapping[str, float]) -> Mapping[str, float]:
    return result.as_dict() if isinstance(result, Evaluation) else result


def _sort_key(bits_per_byte: float) -> float:
    return bits_per_byte if math.isfinite(bits_per_byte) else math.inf


def compare_models(results: Mapping[str, Evaluation | Mapping[str, float]]) -> list[dict[str, object]]:
    """Table rows, one per model, best bits per byte first (``inf``/``nan`` last; ties keep input order).

    Accepts ``Evaluation``s or their ``as_dict()`` (as read back from a stage's metrics file). Each row
    has ``TABLE_COLUMNS`` plus ``rank`` (1 = best). Per-token perplexities are only comparable between
    models sharing a tokenizer; bits per byte and per-word perplexity always are.

    ``compare_models({"laplace": e1, "rnn": e2})`` -> ``[{"rank": 1, "model": "rnn", ...}, {"rank": 2, ...}]``
    """
    names = sorted(results, key=lambda name: _sort_key(float(_figures(results[name])["bits_per_byte"])))
    rows = []
    for rank, name in enumerate(names, 1):
        figures = _figures(results[name])
        row: dict[str, object] = {"rank": rank}
        for column in TABLE_COLUMNS:
            row[column] = name if column == "model" else figures.get(column)
        rows.append(row)
    return rows


def plot_bits_per_byte(results: Mapping[str, Evaluation | Mapping[str, float]], path: Path,
                       title: Optional[str] = "Bits per byte (lower is better)") -> Path:
    """Horizontal bar chart of each model's bits per byte, best at the top, written atomically as PNG.

    Uses matplotlib's Agg canvas directly (no ``pyplot``, no global backend switch, no display needed).
    A model with infinite bits per byte gets an empty bar labelled ``inf``.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    path = Path(path)
    rows = compare_models(results)
    names = [str(row["model"]) for row in rows]
    values = [float(row["bits_per_byte"]) for row in rows]
    finite = [v if math.isfinite(v) else 0.0 for v in values]
    figure = Figure(figsize=(7.0, 1.0 + 0.45 * max(1, len(rows))), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot(1, 1, 1)
    positions = np.arange(len(rows))[::-1]
    axes.barh(positions, finite, color="#4C72B0")
    axes.set_yticks(positions, names)
    for y, value, width in zip(positions, values, finite):
        axes.text(width, y, f" {value:.3f}" if math.isfinite(value) else " inf", va="center", fontsize=9)
    axes.set_xlabel("bits per byte of the UTF-8 source text")
    axes.set_xlim(0, max(finite + [1e-9]) * 1.18)
    if title:
        axes.set_title(title)
    figure.tight_layout()

    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_with(path, lambda f: figure.savefig(f, format="png"))
    return path
