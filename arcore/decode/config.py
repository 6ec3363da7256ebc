"""Decoding parameters and their validation.

Input: user-chosen decoding parameters (from the pipeline config, ``arpipe generate`` flags or a pyfunc
request). Output: a frozen ``DecodeConfig``, or a one-line ``ConfigError`` that names the parameter, the
value received and what to change. The ``check_*`` functions are the single source of these messages:
``DecodeConfig`` calls them, and so do ``greedy``/``sample``/``beam_search`` for their own arguments, so
a library caller who never builds a config gets the same errors.

Each message names both the config key and the ``arpipe generate`` flag, e.g.::

    check_top_k(0)  ->  ConfigError("top_k (--k) must be an integer >= 1, got 0; ...")
"""

from __future__ import annotations

import math
from typing import Literal, Optional, Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from arcore.errors import ConfigError

Strategy = Literal["greedy", "sample", "top-k", "top-p", "beam"]
LengthPenaltyForm = Literal["gnmt", "power"]


def _is_int(value: object) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _is_real(value: object) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))


def check_temperature(temperature: float) -> float:
    """Temperature must be a finite number > 0 (1 leaves the distribution unchanged)."""
    if not _is_real(temperature) or not math.isfinite(temperature) or temperature <= 0:
        raise ConfigError(
            f"temperature (--temperature) must be a finite number > 0, got {temperature!r}; "
            "use 1.0 for the model's own distribution, or the greedy strategy for argmax decoding"
        )
    return float(temperature)


def check_top_k(top_k: Optional[int]) -> Optional[int]:
    """``top_k`` is ``None`` (no top-k filter) or an integer >= 1."""
    if top_k is None:
        return None
    if not _is_int(top_k) or top_k < 1:
        raise ConfigError(
            f"top_k (--k) must be an integer >= 1, got {top_k!r}; pass 1 or more, or leave it unset to "
            "keep every token"
        )
    return int(top_k)


def check_top_p(top_p: Optional[float]) -> Optional[float]:
    """``top_p`` is ``None`` (no nucleus filter) or a number in (0, 1]."""
    if top_p is None:
        return None
    if not _is_real(top_p) or not 0.0 < top_p <= 1.0:
        raise ConfigError(
            f"top_p (--p) must be in (0, 1], got {top_p!r}; pass e.g. 0.9, or 1.0 (or unset) to keep every "
            "token"
        )
    return float(top_p)


def check_max_tokens(max_tokens: int) -> int:
    """At least one token must be generated."""
    if not _is_int(max_tokens) or max_tokens < 1:
        raise ConfigError(f"max_tokens (--max-tokens) must be an integer >= 1, got {max_tokens!r}")
    return int(max_tokens)


def check_beam_width(beam_width: int) -> int:
    """Beam search keeps ``beam_width`` >= 1 live hypotheses per step."""
    if not _is_int(beam_width) or beam_width < 1:
        raise ConfigError(
            f"beam_width (--beam-width) must be an integer >= 1, got {beam_width!r}; 1 is greedy with "
            "end-of-sequence bookkeeping, 4-10 is usual"
        )
    return int(beam_width)


def check_n_best(n_best: int, beam_width: int) -> int:
    """The n-best list cannot be longer than the beam that produced it."""
    if not _is_int(n_best) or not 1 <= n_best <= beam_width:
        raise ConfigError(
            f"n_best must be an integer between 1 and beam_width ({beam_width}), got {n_best!r}; raise "
            "beam_width or lower n_best"
        )
    return int(n_best)


def check_num_samples(num_samples: int) -> int:
    if not _is_int(num_samples) or num_samples < 1:
        raise ConfigError(f"num_samples must be an integer >= 1, got {num_samples!r}")
    return int(num_samples)


def check_length_penalty(alpha: float) -> float:
    if not _is_real(alpha) or not math.isfinite(alpha):
        raise ConfigError(
            f"length_penalty must be a finite number, got {alpha!r}; 0 ranks by log-probability, GNMT "
            "uses 0.6-0.7"
        )
    return float(alpha)


def check_prompt(prompt: Sequence[int], vocab_size: int, bos_id: int, eos_id: int,
                 require_prompt: bool = False) -> tuple[int, ...]:
    """A prompt is the start of one document: ids in ``[0, vocab_size)``, without ``<s>`` or ``</s>``.

    ``<s>`` is refused because ``initial_state`` already has it as context (feeding it again would make a
    context no training document has); ``</s>`` is refused because it would end the document being
    continued. ``require_prompt`` is for front ends whose model or use needs something to continue.

    ``check_prompt([5, 6], 10, 0, 1) -> (5, 6)``; ``check_prompt([], 10, 0, 1, require_prompt=True)``
    raises ``ConfigError``.
    """
    ids = tuple(prompt)
    if require_prompt and not ids:
        raise ConfigError(
            "the prompt is empty but this model needs one; pass --prompt with some text to continue"
        )
    for position, token in enumerate(ids):
        if not _is_int(token) or not 0 <= token < vocab_size:
            raise ConfigError(
                f"prompt id {token!r} at position {position} is not a token id of this model "
                f"(vocabulary size {vocab_size}); encode the prompt with the model's own tokenizer"
            )
        if token == bos_id:
            raise ConfigError(
                f"prompt holds <s> (id {bos_id}) at position {position}; drop it: every decode starts "
                "from <s> already"
            )
        if token == eos_id:
            raise ConfigError(
                f"prompt holds </s> (id {eos_id}) at position {position}; a prompt is the start of one "
                "document, so remove the end-of-document token"
            )
    return tuple(int(t) for t in ids)


_FIELD_CHECKS = {
    "temperature": check_temperature,
    "top_k": check_top_k,
    "top_p": check_top_p,
    "beam_width": check_beam_width,
    "length_penalty": check_length_penalty,
    "max_tokens": check_max_tokens,
    "num_samples": check_num_samples,
}


class DecodeConfig(BaseModel):
    """How to turn a model into text; one config serves every strategy.

    strategy: ``greedy`` (argmax), ``sample`` (ancestral sampling through the filters below), ``top-k``
      and ``top-p`` (sampling that requires ``top_k`` / ``top_p`` to be set), ``beam`` (beam search).
    temperature, top_k, top_p: the sampling filters, applied in that order (see ``filters``).
    beam_width, n_best, length_penalty, length_penalty_form: beam search (see ``beam_search``).
    max_tokens: generated tokens at most, ``</s>`` included; the prompt does not count.
    min_tokens: ``</s>`` is forbidden before this many generated tokens (``constraints.MinLength``).
    num_samples: independent samples drawn by the sampling strategies.
    seed: seeds ``numpy.random.default_rng``; the same seed, model and config give the same text.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    strategy: Strategy = "sample"
    temperature: float = 1.0
    top_k: Optional[int] = None
    top_p: Optional[float] = None
    beam_width: int = 4
    n_best: int = 1
    length_penalty: float = 0.0
    length_penalty_form: LengthPenaltyForm = "gnmt"
    max_tokens: int = 64
    min_tokens: int = Field(0, ge=0, description="forbid </s> before this many generated tokens")
    num_samples: int = 1
    seed: Optional[int] = 0

    @field_validator("temperature", "top_k", "top_p", "beam_width", "length_penalty", "max_tokens",
                     "num_samples")
    @classmethod
    def _check_field(cls, value, info):
        # ConfigError is not a ValueError, so pydantic lets it through unwrapped: one line for the user.
        return _FIELD_CHECKS[info.field_name](value)

    @model_validator(mode="after")
    def _check_combination(self) -> "DecodeConfig":
        if self.strategy == "beam":
            check_n_best(self.n_best, self.beam_width)
        elif self.n_best < 1:  # ignored outside beam search, but still refused when meaningless
            raise ConfigError(f"n_best must be an integer >= 1, got {self.n_best!r}")
        if self.strategy == "top-k" and self.top_k is None:
            raise ConfigError("strategy 'top-k' needs top_k (--k); pass e.g. --k 40")
        if self.strategy == "top-p" and self.top_p is None:
            raise ConfigError("strategy 'top-p' needs top_p (--p); pass e.g. --p 0.9")
        return self
