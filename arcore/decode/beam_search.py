"""Beam search: keep the ``beam_width`` best partial sequences, extend all of them, keep the best again.

Input: a ``LanguageModel``, a prompt (ids, may be empty), ``beam_width``, ``n_best``, a length penalty
and ``max_tokens``. Output: the n-best list, a tuple of ``Generation`` records sorted best first.

Algorithm (as in Hugging Face's ``BeamSearchScorer``, with exact early stopping):
1. The prompt is fed once; the beam starts as that single hypothesis (log-probability 0).
2. Each step scores every live hypothesis extended by every token in one batched ``next_logprobs``
   call, and ranks the ``live x vocab`` candidates by log-probability (all candidates of a step have the
   same length, so the length penalty cannot change their order). Going down the top ``2 x beam_width``:
   a candidate ending in ``</s>`` that ranks within the first ``beam_width`` is *finished* and leaves the
   beam (finished hypotheses are kept apart, never extended); other candidates fill the next beam up to
   ``beam_width``. The new beam's model states are gathered with ``select`` (parents may repeat).
   Candidates of probability 0 are dropped.
3. The search stops at ``max_tokens`` steps, when no live hypothesis is left, or as soon as ``n_best``
   finished hypotheses exist and no live one can beat the worst of them: log-probabilities only fall
   as tokens are appended, so a live hypothesis with log-prob ``L`` at length ``t`` can at best reach
   ``L / lp(m)`` for some length ``m`` in ``(t, max_tokens]``, which is largest at one end of that range.
   With this bound the search returns what an unbounded-patience beam search would.
4. The n-best list is the finished hypotheses by score; if fewer than ``n_best`` finished, the live
   hypotheses cut at ``max_tokens`` fill the rest (``finished=False``), after every finished one.

Length penalty (``score = logprob / lp(length)``, length = generated tokens including ``</s>``, the
prompt excluded). With ``alpha = 0`` (the default) ``lp = 1`` and the score is the log-probability, which
favours short outputs since every token costs probability; ``alpha > 0`` divides the (negative) score by
a length-growing ``lp`` and so favours longer outputs:
- ``"gnmt"``: ``lp = ((5 + length) / 6) ** alpha`` (Wu et al., 2016, GNMT, eq. 14; alpha 0.6-0.7 there);
- ``"power"``: ``lp = length ** alpha`` (alpha = 1 is the per-token average log-probability).

A beam as wide as the tree of all sequences up to ``max_tokens`` finds the exact highest-scoring
sequence that ends in ``</s>``; a beam of width 1 with ``alpha = 0`` returns the greedy sequence when
greedy ends the document within ``max_tokens``.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from arcore.decode.config import (LengthPenaltyForm, check_beam_width, check_length_penalty,
                                  check_max_tokens, check_n_best)
from arcore.decode.generation import Generation, feed_prompt
from arcore.errors import ConfigError
from arcore.lm import LanguageModel


def length_penalty(length: int, alpha: float, form: LengthPenaltyForm = "gnmt") -> float:
    """``lp(length)``: ``((5 + length) / 6) ** alpha`` (gnmt) or ``length ** alpha`` (power).

    ``length_penalty(1, 0.6) -> 1.0``; ``length_penalty(7, 0.6) -> 2 ** 0.6 = 1.5157``.
    """
    if form == "gnmt":
        return ((5.0 + length) / 6.0) ** alpha
    if form == "power":
        return float(length) ** alpha
    raise ConfigError(f"length_penalty_form must be 'gnmt' or 'power', got {form!r}")


def _best_reachable(logprob: float, length: int, max_tokens: int, alpha: float,
                    form: LengthPenaltyForm) -> float:
    """Upper bound on the score of any finished extension of a live hypothesis (see step 3)."""
    if length >= max_tokens:
        return -math.inf
    return max(logprob / length_penalty(length + 1, alpha, form),
               logprob / length_penalty(max_tokens, alpha, form))


def _top_candidates(scores: np.ndarray, count: int) -> np.ndarray:
    """Flat indices of the ``count`` largest finite ``scores``, best first (ties: lower index first)."""
    finite = np.flatnonzero(np.isfinite(scores))
    if len(finite) > count:
        part = np.argpartition(-scores[finite], count - 1)[:count]
        finite = finite[part]
    return finite[np.lexsort((finite, -scores[finite]))]


def beam_search(model: LanguageModel, prompt: Sequence[int] = (), *, beam_width: int = 4, n_best: int = 1,
                length_penalty_alpha: float = 0.0, length_penalty_form: LengthPenaltyForm = "gnmt",
                max_tokens: int = 64, require_prompt: bool = False) -> tuple[Generation, ...]:
    """The ``n_best`` best continuations of ``prompt`` found with a beam of ``beam_width``, best first.

    ``Generation.score`` is the length-penalised log-probability; ``logprob`` the plain one.
    """
    width = check_beam_width(beam_width)
    n_best = check_n_best(n_best, width)
    alpha = check_length_penalty(length_penalty_alpha)
    max_tokens = check_max_tokens(max_tokens)
    length_penalty(1, alpha, length_penalty_form)  # refuses an unknown form before any model call
    eos = model.eos_id

    state = feed_prompt(model, prompt, require_prompt)
    beam_tokens = np.zeros((1, 0), dtype=np.int64)       # (live, length) generated ids per hypothesis
    beam_token_lp = np.zeros((1, 0), dtype=np.float64)   # model log P of each of those ids
    beam_lp = np.zeros(1, dtype=np.float64)              # their sum
    finished: list[Generation] = []

    for step in range(max_tokens):
        length = step + 1
        logprobs = np.asarray(model.next_logprobs(state), dtype=np.float64)
        vocab = logprobs.shape[1]
        candidates = (beam_lp[:, None] + logprobs).ravel()
        top = _top_candidates(candidates, 2 * width)
        parents, tokens = np.divmod(top, vocab)

        keep: list[int] = []
        penalty = length_penalty(length, alpha, length_penalty_form)
        for rank, (parent, token) in enumerate(zip(parents, tokens)):
            if token == eos:
                if rank < width:
                    ids = tuple(int(t) for t in beam_tokens[parent]) + (eos,)
                    lps = tuple(float(x) for x in beam_token_lp[parent]) + (float(logprobs[parent, eos]),)
                    total = float(candidates[parent * vocab + token])
                    finished.append(Generation(ids=ids, logprobs=lps, logprob=total,
                                               score=total / penalty, finished=True))
            elif len(keep) < width:
                keep.append(rank)
        if not keep:  # every surviving candidate ended the document: nothing left to extend
            beam_lp = beam_lp[:0]
            break
        keep_idx = np.asarray(keep)
        parents, tokens = parents[keep_idx], tokens[keep_idx]
        beam_tokens = np.concatenate([beam_tokens[parents], tokens[:, None]], axis=1)
        beam_token_lp = np.concatenate([beam_token_lp[parents], logprobs[parents, tokens][:, None]], axis=1)
        beam_lp = candidates[top[keep_idx]]
        if length == max_tokens:
            break
        if len(finished) >= n_best:
            worst_kept = sorted(g.score for g in finished)[-n_best]
            best_live = _best_reachable(float(beam_lp.max()), length, max_tokens, alpha, length_penalty_form)
            if best_live < worst_kept:
                break
        state = model.advance(model.select(state, parents), tokens)

    ranked = sorted(finished, key=lambda g: -g.score)[:n_best]
    if len(ranked) < n_best and len(beam_lp):
        # Not enough finished hypotheses: the live ones, cut at max_tokens, fill the list after them.
        penalty = length_penalty(beam_tokens.shape[1], alpha, length_penalty_form)
        cut = [Generation(ids=tuple(int(t) for t in beam_tokens[i]),
                          logprobs=tuple(float(x) for x in beam_token_lp[i]), logprob=float(beam_lp[i]),
                          score=float(beam_lp[i]) / penalty, finished=False) for i in range(len(beam_lp))]
        ranked += sorted(cut, key=lambda g: -g.score)[:n_best - len(ranked)]
    return tuple(ranked)
