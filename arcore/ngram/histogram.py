"""Histogram: the lecture's distribution over a finite set, fit by counting; the unigram model.

Input: samples from a finite set (any hashable items, or an integer array), optionally the full support
and a pseudocount. Output: a normalised histogram with probability lookup and sampling. Example::

    h = Histogram.fit(["a", "b", "a", "c"])       # support a, b, c; counts 2, 1, 1
    h.prob("a") -> 0.5;  h.prob("z") -> 0.0;  h.sample(3, rng) -> e.g. ["a", "c", "a"]

``UnigramModel`` is the special case over token ids: a histogram over ``[0, V)`` minus ``<s>``, used as a
``LanguageModel`` whose prediction ignores the context (state is just the batch size).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Hashable, Iterable, Sequence

import numpy as np

from arcore.errors import ConfigError, InputError


@dataclass(frozen=True, eq=False)
class Histogram:
    """``support[i]`` has probability ``probs[i]``; ``counts`` are the fitted counts (plus pseudocounts)."""

    support: tuple
    counts: np.ndarray
    probs: np.ndarray

    @classmethod
    def fit(cls, samples: Iterable[Hashable], support: Sequence[Hashable] | None = None,
            pseudocount: float = 0.0) -> "Histogram":
        if pseudocount < 0:
            raise ConfigError(f"pseudocount must be >= 0, got {pseudocount}")
        samples = list(samples.tolist() if isinstance(samples, np.ndarray) else samples)
        if support is None:
            support = sorted(set(samples), key=lambda x: (str(type(x)), x))
        support = tuple(support)
        position = {item: i for i, item in enumerate(support)}
        if len(position) != len(support):
            raise InputError("histogram support has duplicate items; pass each item once")
        try:
            codes = np.fromiter((position[s] for s in samples), dtype=np.int64, count=len(samples))
        except KeyError as exc:
            raise InputError(f"sample {exc.args[0]!r} is not in the histogram support") from None
        counts = np.bincount(codes, minlength=len(support)).astype(np.float64) + pseudocount
        if counts.sum() <= 0:
            raise InputError("cannot fit a histogram to no samples without a pseudocount")
        return cls(support, counts, counts / counts.sum())

    def _position(self) -> dict:
        return {item: i for i, item in enumerate(self.support)}

    def prob(self, item: Hashable) -> float:
        i = self._position().get(item)
        return 0.0 if i is None else float(self.probs[i])

    def probs_of(self, items: Iterable[Hashable]) -> np.ndarray:
        position = self._position()
        return np.array([self.probs[position[x]] if x in position else 0.0 for x in items])

    def sample(self, n: int, rng: np.random.Generator | None = None) -> list:
        rng = rng if rng is not None else np.random.default_rng()
        return [self.support[i] for i in rng.choice(len(self.support), size=n, p=self.probs)]


@dataclass(frozen=True, eq=False)
class UnigramModel:
    """Histogram over token ids as a ``LanguageModel``: ``p(w | context) = p(w)``."""

    vocab_size: int
    bos_id: int
    eos_id: int
    logprob: np.ndarray

    @classmethod
    def fit(cls, ids: np.ndarray, vocab_size: int, bos_id: int, eos_id: int,
            pseudocount: float = 0.0) -> "UnigramModel":
        support = [i for i in range(vocab_size) if i != bos_id]
        h = Histogram.fit(np.asarray(ids, dtype=np.int64), support=support, pseudocount=pseudocount)
        logprob = np.full(vocab_size, -np.inf)
        with np.errstate(divide="ignore"):
            logprob[support] = np.log(h.probs)
        return cls(vocab_size, bos_id, eos_id, logprob)

    @classmethod
    def from_counts(cls, id_counts: np.ndarray, bos_id: int, eos_id: int,
                    pseudocount: float = 0.0) -> "UnigramModel":
        """``fit`` from the dense count of every id (``np.bincount(ids, minlength=V)``), without the ids:
        the same arithmetic, so the same model; what the n-gram stage uses on corpora of any size."""
        if pseudocount < 0:
            raise ConfigError(f"pseudocount must be >= 0, got {pseudocount}")
        vocab_size = len(id_counts)
        support = np.array([i for i in range(vocab_size) if i != bos_id], dtype=np.int64)
        counts = np.asarray(id_counts)[support].astype(np.float64) + pseudocount
        if counts.sum() <= 0:
            raise InputError("cannot fit a histogram to no samples without a pseudocount")
        logprob = np.full(vocab_size, -np.inf)
        with np.errstate(divide="ignore"):
            logprob[support] = np.log(counts / counts.sum())
        return cls(vocab_size, bos_id, eos_id, logprob)

    def initial_state(self, batch_size: int) -> np.ndarray:
        return np.zeros(batch_size, dtype=np.int64)

    def next_logprobs(self, state: np.ndarray) -> np.ndarray:
        return np.tile(self.logprob, (len(state), 1))

    def advance(self, state: np.ndarray, tokens: np.ndarray) -> np.ndarray:
        return state

    def select(self, state: np.ndarray, rows: np.ndarray) -> np.ndarray:
        return state[np.asarray(rows, dtype=np.int64)]

    def score(self, ids: np.ndarray) -> np.ndarray:
        return self.logprob[np.asarray(ids, dtype=np.int64)]
