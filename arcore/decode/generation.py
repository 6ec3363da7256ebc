"""What every decoder returns, and the left-to-right loop greedy decoding and sampling share.

Input: a ``LanguageModel`` (see ``arcore.lm``), a prompt (token ids of the start of one document, possibly
empty) and a rule that picks one next token per row from a ``(batch, vocab)`` log-prob array. Output:
frozen ``Generation`` records. The prompt is fed through ``advance`` one token at a time from
``initial_state(1)`` (whose context is ``<s>``), then the batch is made by ``select``-ing that one row
``n`` times, so the prompt is read once however many continuations are drawn.

Conventions
- ``Generation.ids`` are the generated tokens only (the prompt is not repeated), ending with ``</s>``
  when the model chose to end the document (``finished``), or cut at ``max_tokens`` otherwise.
- ``Generation.logprobs`` are the *model's* log P of each generated token given everything before it,
  before any temperature/top-k/top-p filtering, so they score the text under the model whatever
  strategy produced it. ``logprob`` is their sum.
- ``score`` is what the strategy ranked by: ``logprob`` for greedy and sampling, the length-penalised
  log-probability for beam search.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from arcore.decode.config import check_max_tokens, check_prompt
from arcore.lm import LanguageModel, State

# pick(logprobs (rows, vocab)) -> chosen token per row, shape (rows,)
PickRule = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class Generation:
    """One decoded continuation: ``ids`` (generated only), the model's per-token ``logprobs``, their sum
    ``logprob``, the strategy's ranking ``score``, and whether it ended with ``</s>``."""

    ids: tuple[int, ...]
    logprobs: tuple[float, ...]
    logprob: float
    score: float
    finished: bool

    def __len__(self) -> int:
        return len(self.ids)


def feed_prompt(model: LanguageModel, prompt: Sequence[int], require_prompt: bool = False) -> State:
    """The batch-of-one state after ``<s> prompt``; validates the prompt first (see ``check_prompt``).

    ``feed_prompt(model, [])`` is ``model.initial_state(1)``.
    """
    ids = check_prompt(prompt, model.vocab_size, model.bos_id, model.eos_id, require_prompt)
    state = model.initial_state(1)
    for token in ids:
        state = model.advance(state, np.array([token], dtype=np.int64))
    return state


def decode_left_to_right(model: LanguageModel, prompt: Sequence[int], pick: PickRule, *, rows: int,
                         max_tokens: int, require_prompt: bool = False) -> tuple[Generation, ...]:
    """Extend ``rows`` copies of the prompt one token at a time with ``pick`` until each row emits
    ``</s>`` or has ``max_tokens`` tokens.

    Finished rows leave the batch (``select`` keeps the live ones), so a long straggler does not make the
    model keep scoring rows that are done. ``pick`` sees only the live rows, in row order, every step;
    that fixed order is what makes seeded sampling reproducible.
    """
    max_tokens = check_max_tokens(max_tokens)
    state = model.select(feed_prompt(model, prompt, require_prompt), np.zeros(rows, dtype=np.int64))
    tokens = np.zeros((rows, max_tokens), dtype=np.int64)
    token_logprobs = np.zeros((rows, max_tokens), dtype=np.float64)
    lengths = np.zeros(rows, dtype=np.int64)
    finished = np.zeros(rows, dtype=bool)
    live = np.arange(rows)
    for step in range(max_tokens):
        logprobs = np.asarray(model.next_logprobs(state), dtype=np.float64)
        chosen = np.asarray(pick(logprobs), dtype=np.int64)
        tokens[live, step] = chosen
        token_logprobs[live, step] = logprobs[np.arange(len(live)), chosen]
        lengths[live] = step + 1
        ended = chosen == model.eos_id
        finished[live[ended]] = True
        if step + 1 == max_tokens or ended.all():
            break
        keep = np.flatnonzero(~ended)
        if len(keep) < len(live):
            state, chosen, live = model.select(state, keep), chosen[keep], live[keep]
        state = model.advance(state, chosen)
    results = []
    for row in range(rows):
        n = int(lengths[row])
        row_logprobs = tuple(float(x) for x in token_logprobs[row, :n])
        total = float(np.sum(token_logprobs[row, :n]))
        results.append(Generation(ids=tuple(int(t) for t in tokens[row, :n]), logprobs=row_logprobs,
                                  logprob=total, score=total, finished=bool(finished[row])))
    return tuple(results)
