"""Sampling filters: temperature, top-k and top-p (nucleus) on batches of next-token distributions.

Input: ``(batch, vocab)`` float64 arrays of natural log-probabilities (each row a distribution, ``-inf``
for impossible tokens), as ``LanguageModel.next_logprobs`` returns them. Output: arrays of the same shape,
again normalised log-probabilities, with filtered-out tokens at ``-inf``. Everything is vectorized over
the batch; no Python loop per row.

``apply_filters`` composes them in the order the lecture (and Hugging Face's logits processors) use:
temperature first, so it changes which tokens survive top-k/top-p; then top-k; then top-p on what top-k
left, renormalised. Ties are broken towards the lower token id everywhere (stable sorts), so filtering is
deterministic.

Worked example, probabilities ``[0.5, 0.3, 0.15, 0.05]``::

    temperature_scale(log p, 0.5)  ->  p^2 / sum p^2 = [0.6849, 0.2466, 0.0616, 0.0068]
    top_k_filter(log p, 2)         ->  [0.625, 0.375, 0, 0]
    top_p_filter(log p, 0.8)       ->  [0.625, 0.375, 0, 0]      (0.5 < 0.8 <= 0.5 + 0.3)
    top_p_filter(log p, 0.81)      ->  [0.5263, 0.3158, 0.1579, 0]
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from arcore.decode.config import check_temperature, check_top_k, check_top_p

# Cumulative sums of float64 probabilities drift by a few ulps; a nucleus whose mass is within this of p
# counts as reaching p (so [0.5, 0.3, ...] with p = 0.8 keeps two tokens, not three).
TOP_P_TOLERANCE = 1e-12


def log_softmax(scores: np.ndarray) -> np.ndarray:
    """Row-wise ``scores - logsumexp(scores)``; rows that are all ``-inf`` stay all ``-inf``.

    ``log_softmax([[0, 0]]) -> [[-0.6931, -0.6931]]``
    """
    scores = np.asarray(scores, dtype=np.float64)
    row_max = np.max(scores, axis=-1, keepdims=True)
    row_max = np.where(np.isfinite(row_max), row_max, 0.0)
    shifted = scores - row_max
    with np.errstate(divide="ignore"):
        log_norm = np.log(np.sum(np.exp(shifted), axis=-1, keepdims=True))
    return np.where(np.isfinite(log_norm), shifted - np.where(np.isfinite(log_norm), log_norm, 0.0), -np.inf)


def _as_batch(logprobs: np.ndarray) -> np.ndarray:
    logprobs = np.asarray(logprobs, dtype=np.float64)
    if logprobs.ndim != 2:
        raise ValueError(f"expected (batch, vocab) log-probabilities, got shape {logprobs.shape}")
    return logprobs


def temperature_scale(logprobs: np.ndarray, temperature: float) -> np.ndarray:
    """``p_i^(1/T) / sum_j p_j^(1/T)`` in log space: T < 1 sharpens, T > 1 flattens, T = 1 is identity.

    As T -> 0 the row tends to a point mass on its argmax (ties share it), which is why sampling at a
    tiny temperature reproduces greedy decoding. The row maximum is subtracted before dividing, so tiny
    temperatures underflow the losers to ``-inf`` rather than overflowing everything.
    """
    temperature = check_temperature(temperature)
    logprobs = _as_batch(logprobs)
    if temperature == 1.0:
        return log_softmax(logprobs)
    row_max = np.max(logprobs, axis=1, keepdims=True)
    row_max = np.where(np.isfinite(row_max), row_max, 0.0)
    with np.errstate(over="ignore"):
        return log_softmax((logprobs - row_max) / temperature)


def top_k_filter(logprobs: np.ndarray, k: int) -> np.ndarray:
    """Keep the ``k`` most probable tokens of each row and renormalise; ``k >= vocab`` keeps all.

    Exactly ``k`` tokens survive (fewer if the row has fewer possible tokens): among tokens tied with the
    k-th, lower ids win. ``top_k_filter(log [[0.2, 0.5, 0.3]], 2) -> log [[0, 0.625, 0.375]]``.
    """
    k = check_top_k(k)
    logprobs = _as_batch(logprobs)
    if k >= logprobs.shape[1]:
        return log_softmax(logprobs)
    order = np.argsort(-logprobs, axis=1, kind="stable")
    filtered = np.full_like(logprobs, -np.inf)
    keep = order[:, :k]
    np.put_along_axis(filtered, keep, np.take_along_axis(logprobs, keep, axis=1), axis=1)
    return log_softmax(filtered)


def top_p_filter(logprobs: np.ndarray, p: float) -> np.ndarray:
    """Nucleus filter (Holtzman et al., 2020): keep the smallest set of most probable tokens whose mass
    reaches ``p``, then renormalise.

    Tokens are taken in decreasing probability (ties: lower id first); token i is kept when the mass of
    the tokens before it is still below ``p`` (less ``TOP_P_TOLERANCE``). So the most probable token is
    always kept, and a set whose mass equals ``p`` exactly stops there. ``p = 1`` keeps every token.
    ``top_p_filter(log [[0.5, 0.3, 0.15, 0.05]], 0.8) -> log [[0.625, 0.375, 0, 0]]``.
    """
    p = check_top_p(p)
    logprobs = _as_batch(logprobs)
    if p >= 1.0:
        return log_softmax(logprobs)
    order = np.argsort(-logprobs, axis=1, kind="stable")
    sorted_probs = np.exp(np.take_along_axis(log_softmax(logprobs), order, axis=1))
    mass_before = np.cumsum(sorted_probs, axis=1) - sorted_probs
    keep_sorted = mass_before < p - TOP_P_TOLERANCE
    keep_sorted[:, 0] = True
    keep = np.zeros_like(keep_sorted)
    np.put_along_axis(keep, order, keep_sorted, axis=1)
    return log_softmax(np.where(keep, logprobs, -np.inf))


def apply_filters(logprobs: np.ndarray, temperature: float = 1.0, top_k: Optional[int] = None,
                  top_p: Optional[float] = None) -> np.ndarray:
    """Temperature, then top-k, then top-p; ``None`` switches a filter off. Returns normalised log-probs.

    The order matters: ``apply_filters(lp, 2.0, top_p=0.9)`` flattens first, so more tokens fit in the
    0.9 nucleus than ``top_p_filter(lp, 0.9)`` alone would keep.
    """
    out = temperature_scale(logprobs, temperature)
    if top_k is not None:
        out = top_k_filter(out, top_k)
    if top_p is not None:
        out = top_p_filter(out, top_p)
    return out
