"""Greedy decoding: at every step take the most probable next token.

Input: a ``LanguageModel``, a prompt (ids, may be empty) and ``max_tokens``. Output: one ``Generation``.
Greedy is deterministic and needs no seed; among tokens tied for the maximum the lowest id wins
(``numpy.argmax``). It is the limit of sampling as the temperature goes to 0, and what beam search with
``beam_width=1`` and no length penalty returns when greedy ends the document within ``max_tokens``.

Example (a bigram model whose most likely path from ``<s>`` is ``a b </s>``)::

    greedy(model, [], max_tokens=10).ids  ->  (a, b, eos)
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from arcore.decode.generation import Generation, decode_left_to_right
from arcore.lm import LanguageModel


def argmax_pick(logprobs: np.ndarray) -> np.ndarray:
    """The most probable token of each row (lowest id among ties)."""
    return np.argmax(logprobs, axis=1)


def greedy(model: LanguageModel, prompt: Sequence[int] = (), *, max_tokens: int = 64,
           require_prompt: bool = False) -> Generation:
    """Greedy continuation of ``prompt``; ``require_prompt`` refuses an empty prompt with a ConfigError."""
    (result,) = decode_left_to_right(model, prompt, argmax_pick, rows=1, max_tokens=max_tokens,
                                     require_prompt=require_prompt)
    return result
