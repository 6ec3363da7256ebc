"""Ancestral sampling: draw each next token from the (filtered) model distribution, left to right.

Input: a ``LanguageModel``, a prompt (ids, may be empty), the filters (temperature, top-k, top-p; see
``filters``), ``max_tokens``, ``num_samples`` and a seed. Output: ``num_samples`` independent
``Generation`` records, drawn as one batch.

Sampling x_t ~ P(x_t | x_<t) in turn draws a whole sequence from P(x) = prod_t P(x_t | x_<t) exactly
(with temperature 1 and no top-k/top-p); the filters trade that fidelity for more conservative text.
Reported ``logprobs`` are the unfiltered model's (see ``generation``).

Reproducibility: the draws come from ``numpy.random.default_rng(seed)`` by inverse-CDF sampling, one
uniform number per live row per step in row order, so the same model, prompt, parameters and seed give
the same samples on every run and platform. Pass a ``numpy.random.Generator`` instead of a seed to
continue an existing stream.
"""

from __future__ import annotations

from typing import Optional, Sequence, Union

import numpy as np

from arcore.decode.config import check_num_samples, check_temperature, check_top_k, check_top_p
from arcore.decode.filters import apply_filters
from arcore.decode.generation import Generation, decode_left_to_right
from arcore.lm import LanguageModel

Seed = Union[int, np.random.Generator, None]


def sample_from_logprobs(logprobs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One draw per row of a ``(batch, vocab)`` log-prob array by inverting the cumulative distribution.

    The uniform draw is taken in (0, 1] so a token of probability 0 is never chosen, even at the edges.
    ``sample_from_logprobs(log [[0, 1, 0]], rng) -> [1]``.
    """
    probs = np.exp(logprobs)
    cumulative = np.cumsum(probs, axis=1)
    if not np.all(cumulative[:, -1] > 0):
        raise ValueError("a next-token distribution gives every token probability 0; the model's "
                         "next_logprobs breaks the LanguageModel contract")
    targets = (1.0 - rng.random(len(probs))) * cumulative[:, -1]
    chosen = np.sum(cumulative < targets[:, None], axis=1)
    return np.minimum(chosen, probs.shape[1] - 1)


def sample(model: LanguageModel, prompt: Sequence[int] = (), *, temperature: float = 1.0,
           top_k: Optional[int] = None, top_p: Optional[float] = None, max_tokens: int = 64,
           num_samples: int = 1, seed: Seed = 0, require_prompt: bool = False) -> tuple[Generation, ...]:
    """``num_samples`` ancestral samples continuing ``prompt``, filtered by temperature -> top-k -> top-p.

    Bad parameters raise ``ConfigError`` before the model is called.
    """
    temperature = check_temperature(temperature)
    top_k, top_p = check_top_k(top_k), check_top_p(top_p)
    rows = check_num_samples(num_samples)
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)

    def pick(logprobs: np.ndarray) -> np.ndarray:
        return sample_from_logprobs(apply_filters(logprobs, temperature, top_k, top_p), rng)

    return decode_left_to_right(model, prompt, pick, rows=rows, max_tokens=max_tokens,
                                require_prompt=require_prompt)
