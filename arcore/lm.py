"""The state-in/state-out interface every autoregressive model exposes.

P(x) = prod_t P(x_t | x_<t): a model only has to say, for a batch of contexts summarised as *states*,
the distribution of the next token, and how a state advances when a token is appended. KenLM's scoring
API has this shape (``score(in_state, word) -> (log prob, out_state)``); the histogram, every n-gram
estimator and the RNN implement it, and decoding and evaluation are written once against it.

Conventions
- Token ids are ints in ``[0, vocab_size)``; the tokenizer defines ``bos_id`` (``<s>``, context only,
  never predicted) and ``eos_id`` (``</s>``, predicted at the end of every document).
- Log-probabilities are natural logs (nats) as float64 numpy arrays; ``exp`` of a row sums to 1.
- A *state* is opaque to callers; batch rows are independent. ``select`` reorders or duplicates rows,
  which beam search needs.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np

State = Any


@runtime_checkable
class LanguageModel(Protocol):
    vocab_size: int
    bos_id: int
    eos_id: int

    def initial_state(self, batch_size: int) -> State:
        """States for ``batch_size`` empty contexts (a document start: ``<s>`` as context)."""
        ...

    def next_logprobs(self, state: State) -> np.ndarray:
        """``(batch, vocab_size)`` log P(next token | context) for each row of ``state``."""
        ...

    def advance(self, state: State, tokens: np.ndarray) -> State:
        """The states after appending ``tokens`` (shape ``(batch,)``) to each row's context."""
        ...

    def select(self, state: State, rows: np.ndarray) -> State:
        """A new batch made of ``state``'s rows ``rows`` (may repeat or reorder)."""
        ...

    def score(self, ids: np.ndarray) -> np.ndarray:
        """Per-token log P(ids[t] | ids[:t]) for a flat id array of whole documents.

        ``ids`` is the shard layout: documents back to back, each followed by ``eos_id``; every
        document starts from ``initial_state``. Vectorized: no Python loop per token.
        """
        ...
