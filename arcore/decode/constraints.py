"""Decoding constraints as model wrappers, so every decoder obeys them without knowing about them.

``MinLength(model, n)`` forbids ``</s>`` until ``n`` tokens have been read or generated since ``<s>``
(the prompt counts; ``generate`` adds the prompt length for you). The next-token distribution is the
model's with ``</s>`` removed and the rest renormalized, as Hugging Face's ``min_new_tokens`` does;
log-probabilities that decoders report are then those of the constrained distribution.

>>> # a model that always prefers </s> still produces 5 tokens under MinLength(model, 5)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from arcore.decode.filters import log_softmax
from arcore.lm import LanguageModel, State


@dataclass(frozen=True)
class _Counted:
    inner: State
    steps: np.ndarray  # tokens read since <s>, per row


class MinLength:
    def __init__(self, model: LanguageModel, min_tokens: int):
        self.model = model
        self.min_tokens = int(min_tokens)
        self.vocab_size, self.bos_id, self.eos_id = model.vocab_size, model.bos_id, model.eos_id

    def initial_state(self, batch_size: int) -> _Counted:
        return _Counted(self.model.initial_state(batch_size), np.zeros(batch_size, dtype=np.int64))

    def next_logprobs(self, state: _Counted) -> np.ndarray:
        logprobs = np.array(self.model.next_logprobs(state.inner), dtype=np.float64)
        early = state.steps < self.min_tokens
        if early.any():
            logprobs[early, self.eos_id] = -np.inf
            logprobs[early] = log_softmax(logprobs[early])
        return logprobs

    def advance(self, state: _Counted, tokens: np.ndarray) -> _Counted:
        return _Counted(self.model.advance(state.inner, tokens), state.steps + 1)

    def select(self, state: _Counted, rows: np.ndarray) -> _Counted:
        rows = np.asarray(rows, dtype=np.int64)
        return _Counted(self.model.select(state.inner, rows), state.steps[rows])

    def score(self, ids: np.ndarray) -> np.ndarray:
        return self.model.score(ids)
