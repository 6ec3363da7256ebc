"""Whitespace-tokenized text to token ids, the way KenLM's lmplz and query read it.

Input: a text file, one sentence per line, words separated by whitespace; blank lines are dropped.
Output: a ``WordVocabulary`` (id 0 ``<unk>``, 1 ``<s>``, 2 ``</s>``, then training words in order of first
appearance, as lmplz numbers them) and flat id arrays in the shard layout (every sentence followed by
``</s>``). Words absent from the vocabulary map to ``<unk>`` and are counted as OOVs, as in query.

Example: ``"a b\\n\\nb\\n"`` -> words ``[<unk>, <s>, </s>, a, b]``, ids ``[3, 4, 2, 4, 2]``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from arcore.errors import InputError
from arcore.ngram.arpa import read_arpa, write_arpa
from arcore.ngram.backoff import BackoffModel
from arcore.ngram.counts import count_ngrams
from arcore.ngram.fit import estimate
from arcore.ngram.index import NGramIndex
from arcore.ngram.interpolation import estimate_interpolated
from arcore.ngram.query import QueryResult, query

UNK, BOS, EOS = "<unk>", "<s>", "</s>"


def read_sentences(path: Path) -> list[list[str]]:
    """Non-blank lines of ``path`` split on whitespace."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"input file {path} does not exist; pass an existing text file") from None
    except UnicodeDecodeError as exc:
        raise InputError(f"input file {path} is not UTF-8 ({exc.reason} at byte {exc.start})") from None
    return [line.split() for line in text.splitlines() if line.strip()]


@dataclass(frozen=True, eq=False)
class WordVocabulary:
    """``words[id]`` and the inverse map. Built from training text, ids 0, 1, 2 are ``<unk> <s> </s>``."""

    words: tuple[str, ...]
    index: dict

    @classmethod
    def from_sentences(cls, sentences: list[list[str]]) -> "WordVocabulary":
        index = {UNK: 0, BOS: 1, EOS: 2}
        for sentence in sentences:
            for word in sentence:
                if word not in index:
                    index[word] = len(index)
                elif index[word] < 3:
                    raise InputError(f"training text contains the reserved token {word}; replace it (for "
                                     "example <unk> by __unk__), as lmplz requires")
        return cls(tuple(index), index)

    @classmethod
    def from_words(cls, words: list[str]) -> "WordVocabulary":
        """An ARPA file's vocabulary (must contain ``<s>`` and ``</s>``)."""
        return cls(tuple(words), {w: i for i, w in enumerate(words)})

    @property
    def unk_id(self) -> int | None:
        return self.index.get(UNK)

    @property
    def bos_id(self) -> int:
        return self.index[BOS]

    @property
    def eos_id(self) -> int:
        return self.index[EOS]

    def __len__(self) -> int:
        return len(self.words)

    def encode(self, sentences: list[list[str]]) -> tuple[np.ndarray, np.ndarray]:
        """Flat ids (each sentence followed by ``</s>``) and the OOV mask (words that map to ``<unk>``).

        Unknown words get ``unk_id`` (-1 when the vocabulary has no ``<unk>``).
        """
        unk = self.unk_id if self.unk_id is not None else -1
        get = self.index.get
        flat = [tok for sentence in sentences for tok in (*sentence, EOS)]
        ids = np.fromiter((get(w, unk) for w in flat), dtype=np.int64, count=len(flat))
        return ids, ids == unk


def estimate_arpa_from_text(train: Path, arpa: Path, order: int, smoothing: str, *, k: float = 0.5,
                            heldout: Path | None = None, discount_fallback: tuple[float, float, float] | None = None,
                            memory_budget_mb: int = 1024) -> tuple[BackoffModel, "WordVocabulary"]:
    """``lmplz``'s job on a whitespace text file: count, estimate ``smoothing``, write ``arpa``.

    ``interpolated`` fits its weights on ``heldout`` when given; otherwise on the last tenth of the
    training sentences, counted without them, and then re-estimates on all sentences with those weights.
    Returns the model and its vocabulary.
    """
    sentences = read_sentences(train)
    if not sentences:
        raise InputError(f"training file {train} has no non-blank lines")
    vocab = WordVocabulary.from_sentences(sentences)
    budget = memory_budget_mb << 20

    def index_of(sents):
        ids, _ = vocab.encode(sents)
        return NGramIndex.from_counts(count_ngrams(ids, order, vocab.bos_id, vocab.eos_id,
                                                   vocab_size=len(vocab), memory_budget_bytes=budget))

    index = index_of(sentences)
    valid_ids, weights = None, None
    if smoothing == "interpolated":
        if heldout is not None:
            valid_ids = vocab.encode(read_sentences(heldout))[0]
        elif len(sentences) < 2:
            raise InputError("interpolated smoothing needs at least 2 training sentences or --heldout FILE")
        else:
            cut = len(sentences) - max(1, len(sentences) // 10)
            fitted = estimate_interpolated(index_of(sentences[:cut]), vocab.encode(sentences[cut:])[0])
            weights = fitted.info["weights"]
    if weights is not None:
        model = estimate_interpolated(index, None, unk_id=vocab.unk_id, weights=weights)
    else:
        model = estimate(smoothing, index, valid_ids=valid_ids, unk_id=vocab.unk_id, add_k=k,
                         discount_fallback=discount_fallback)
    write_arpa(model, arpa, vocab.words)
    return model, vocab


def score_text_with_arpa(arpa: Path, text: Path) -> QueryResult:
    """``query``'s job: score every sentence of ``text`` with the ARPA model; returns a ``QueryResult``."""
    model, words = read_arpa(arpa)
    vocab = WordVocabulary.from_words(words)
    ids, oov = vocab.encode(read_sentences(text))
    if vocab.unk_id is None and oov.any():
        raise InputError(f"{arpa} has no <unk> unigram, so OOV words cannot be scored; re-estimate it")
    return query(model, ids, oov)
