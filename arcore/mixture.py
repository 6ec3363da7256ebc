"""Mixtures: the linear interpolation of several language models over one tokenizer, weights fit by EM.

Input: K ``LanguageModel``s sharing a vocabulary, and held-out ids (the valid split, shard layout).
Output: ``MixtureModel``, itself a ``LanguageModel`` (so every decoder, evaluate and the registry take it):

    P(w | c) = sum_k lambda_k P_k(w | c),    lambda_k >= 0,  sum_k lambda_k = 1

a proper distribution wherever the parts are (each row of ``exp(next_logprobs)`` sums to 1). Mikolov et al.
(2011) interpolate an RNN LM with a 5-gram Kneser-Ney model this way and beat both; Liu et al. (2024) do the
same with an infini-gram.

The weights maximize the held-out likelihood. A flat mixture is the interpolated n-gram's nested chain
with every component always available: with ``mu`` from ``arcore.ngram.interpolation
.fit_interpolation_weights`` on the (T, K) matrix of the parts' probabilities of each held-out token,
``lambda_{K-1} = mu_{K-1}`` and ``lambda_k = mu_k prod_{j > k} (1 - mu_j)`` (``lambda_0`` takes the rest),
and its M step ``mu_k = sum r_k / sum (r_0 + .. + r_k)`` is then exactly the flat EM's ``lambda_k = mean
posterior of part k``: the same EM, not a second one, and the held-out likelihood never decreases.

Worked example: two parts giving a held-out token probabilities 0.5 and 0.1 with weights (0.5, 0.5):
P = 0.3; the posteriors are (0.833, 0.167); over that one token the next weights are (0.833, 0.167).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from arcore.errors import ConfigError
from arcore.lm import LanguageModel


def nested_to_flat(mu: np.ndarray) -> np.ndarray:
    """The nested chain's weights ``mu`` (``mu[0]`` unused) as flat mixture weights summing to 1.

    ``nested_to_flat([1, 0.5, 0.5]) -> [0.25, 0.25, 0.5]``."""
    mu = np.asarray(mu, dtype=np.float64)
    flat = np.empty(mu.size)
    remaining = 1.0
    for k in range(mu.size - 1, 0, -1):
        flat[k] = remaining * mu[k]
        remaining *= 1.0 - mu[k]
    flat[0] = remaining
    return flat


def fit_mixture_weights(probs: np.ndarray, iterations: int = 200) -> np.ndarray:
    """EM weights for the columns of ``probs`` ((T, K): each part's probability of each held-out token)."""
    from arcore.ngram.interpolation import fit_interpolation_weights

    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2 or probs.shape[1] < 1:
        raise ConfigError("a mixture needs a (tokens, parts) matrix of held-out probabilities")
    if probs.shape[1] == 1:
        return np.ones(1)
    mu = fit_interpolation_weights(probs, np.ones(probs.shape, dtype=bool), iterations=iterations)
    return nested_to_flat(mu)


def mixture_loglik(probs: np.ndarray, weights: np.ndarray) -> float:
    """Held-out log-likelihood (nats) of the mixture with ``weights``."""
    with np.errstate(divide="ignore"):
        return float(np.log(np.asarray(probs) @ np.asarray(weights)).sum())


def _logmix(logprobs: Sequence[np.ndarray], log_weights: np.ndarray) -> np.ndarray:
    stacked = np.stack([lp + lw for lp, lw in zip(logprobs, log_weights)])
    top = np.max(stacked, axis=0)
    safe = np.where(np.isfinite(top), top, 0.0)
    with np.errstate(divide="ignore"):
        return safe + np.log(np.sum(np.exp(stacked - safe), axis=0))


@dataclass(frozen=True, eq=False)
class MixtureModel:
    """``parts`` (same vocabulary, ``<s>`` and ``</s>``) mixed with ``weights``; state: one per part."""

    parts: tuple[LanguageModel, ...]
    weights: np.ndarray
    names: tuple[str, ...] = field(default=())
    vocab_size: int = field(init=False)
    bos_id: int = field(init=False)
    eos_id: int = field(init=False)

    def __post_init__(self) -> None:
        if len(self.parts) < 2:
            raise ConfigError("a mixture needs at least two models")
        first = self.parts[0]
        for p in self.parts[1:]:
            if (p.vocab_size, p.bos_id, p.eos_id) != (first.vocab_size, first.bos_id, first.eos_id):
                raise ConfigError("the models of a mixture must share one tokenizer (vocabulary, <s>, </s>)")
        w = np.asarray(self.weights, dtype=np.float64)
        if w.shape != (len(self.parts),) or np.any(w < 0) or not np.isclose(w.sum(), 1.0):
            raise ConfigError(f"mixture weights must be {len(self.parts)} non-negative numbers summing to 1, "
                              f"got {w.tolist()}")
        object.__setattr__(self, "weights", w)
        object.__setattr__(self, "vocab_size", first.vocab_size)
        object.__setattr__(self, "bos_id", first.bos_id)
        object.__setattr__(self, "eos_id", first.eos_id)

    @property
    def _log_weights(self) -> np.ndarray:
        with np.errstate(divide="ignore"):
            return np.log(self.weights)

    def initial_state(self, batch_size: int) -> tuple:
        return tuple(p.initial_state(batch_size) for p in self.parts)

    def next_logprobs(self, state: tuple) -> np.ndarray:
        return _logmix([np.asarray(p.next_logprobs(s), dtype=np.float64) for p, s in zip(self.parts, state)],
                       self._log_weights)

    def advance(self, state: tuple, tokens: np.ndarray) -> tuple:
        return tuple(p.advance(s, tokens) for p, s in zip(self.parts, state))

    def select(self, state: tuple, rows: np.ndarray) -> tuple:
        return tuple(p.select(s, rows) for p, s in zip(self.parts, state))

    def score(self, ids: np.ndarray) -> np.ndarray:
        return _logmix([np.asarray(p.score(ids), dtype=np.float64) for p in self.parts], self._log_weights)


class ScoreMemo:
    """A model whose ``score`` remembers its answers (keyed by the ids' bytes), up to ``max_values`` floats:
    evaluate scores each chunk under a part and then under every mixture holding it, and a part must not
    run again for each. Past the bound it scores again (the same floats, only slower). Everything else is
    the wrapped model's."""

    def __init__(self, model: LanguageModel, max_values: int = 1 << 24):
        self.model, self.max_values, self._memo, self._held = model, max_values, {}, 0
        self.vocab_size, self.bos_id, self.eos_id = model.vocab_size, model.bos_id, model.eos_id

    def __getattr__(self, name):  # initial_state, next_logprobs, advance, select, and the model's own fields
        return getattr(self.model, name)

    def score(self, ids: np.ndarray) -> np.ndarray:
        import hashlib

        ids = np.ascontiguousarray(ids, dtype=np.int64)
        key = hashlib.blake2b(ids.tobytes(), digest_size=16).digest()
        if key not in self._memo:
            scores = np.asarray(self.model.score(ids), dtype=np.float64)
            if self._held + scores.size > self.max_values:
                return scores
            self._memo[key] = scores
            self._held += scores.size
        return self._memo[key]


def mixture_name(parts: Sequence[str]) -> str:
    """``mixture_name(["rnn", "ngram-kneser-ney"]) -> "mixture-rnn_ngram-kneser-ney"``."""
    return "mixture-" + "_".join(parts)  # MLflow metric names allow no "+"


def fit_mixture(parts: dict[str, LanguageModel], heldout_ids: np.ndarray,
                heldout_logprobs: dict[str, np.ndarray] | None = None, iterations: int = 200) -> MixtureModel:
    """The mixture of ``parts`` with EM weights on ``heldout_ids``; ``heldout_logprobs`` (each part's
    ``score(heldout_ids)``) saves rescoring when several mixtures share parts."""
    names = tuple(parts)
    logprobs = heldout_logprobs or {}
    probs = np.column_stack([np.exp(logprobs[n] if n in logprobs else parts[n].score(heldout_ids)) for n in names])
    return MixtureModel(tuple(parts[n] for n in names), fit_mixture_weights(probs, iterations), names)
