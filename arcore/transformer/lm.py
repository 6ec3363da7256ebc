"""A trained Transformer behind ``arcore.lm.LanguageModel``, decoding with a key/value cache.

State (``TransformerState``): for a batch of contexts of equal length, every layer's keys and values of
the positions in the current window, the window's token ids, the number of tokens read since the document
start, and the next-token log-probabilities. ``advance`` runs *one* new token through the model against
the cache (the new query attends to the cached keys; nothing earlier is recomputed), so generating ``n``
tokens costs ``n`` one-token forward steps, not ``n`` passes over the growing prefix. ``select`` is
``index_select`` on the batch axis of every tensor. ``kv_cache=False`` re-encodes the whole window at every
step instead (same numbers, for tests and ``benchmarks/transformer_kv_cache.py``).

Document starts, as ``arcore.rnn.lm``: the model is trained on the shard stream, where a document follows
the previous one's ``</s>`` and ``<s>`` never occurs, so a document starts by reading ``</s>`` at position 0
and ``<s>`` given to ``advance`` is read as ``</s>``. ``score`` resets there at the start of the array and
after every ``</s>``.

Beyond the trained context: a sliding window, re-encoded every ``slide`` tokens. With context ``C`` and
``slide`` ``S`` (default ``C // 2``), write the document's inputs as ``s_0 = </s>, s_1, s_2, ...``;
the prediction after reading ``s_i`` attends to ``s_b .. s_i`` where

    b(i) = 0                              for i < C
    b(i) = (floor((i - C) / S) + 1) * S   for i >= C      (so between C - S + 1 and C tokens of context)

Decoding: when the window is full and a token arrives, the last ``C - S`` tokens and the new one are
re-encoded from position 0 (one pass of ``C - S + 1`` tokens every ``S`` steps: amortised, still a constant
number of token-forwards per generated token). Scoring uses the same windows: one pass per ``S`` tokens
of a long document, keeping each window's last ``S`` predictions. ``score`` and step-by-step ``advance``
therefore give the same numbers at every length (tests/arcore/test_transformer_lm.py). An exact sliding
window (``S = 1``) is allowed, at ``C`` times the cost.

    >>> lm = TransformerLanguageModel.from_dir(stage_dir / "model", bos_id=1, eos_id=2)   # doctest: +SKIP
    >>> lm.score(np.array([5, 9, 2, 7, 2]))   # two documents: [5, 9, </s>] and [7, </s>]  # doctest: +SKIP
    array([-3.1, -2.7, -0.9, -4.0, -1.2])
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from arcore.errors import InputError
from arcore.transformer.checkpoint import load_model
from arcore.transformer.model import KVCache, TransformerModel

_LOGIT_BUDGET = 1 << 24  # floats of logits alive at once in ``score`` (64 MiB)


@dataclass(frozen=True)
class TransformerState:
    """Per-layer K/V ``(B, heads, L, d_head)`` (``None`` without cache), window ids ``(B, L)``, tokens read
    since the document start, and ``(B, V)`` float64 next-token log-probs. Never modified in place."""

    cache: Optional[KVCache]
    window: torch.Tensor
    position: int
    logprobs: torch.Tensor


class TransformerLanguageModel:
    """``arcore.lm.LanguageModel`` over a ``TransformerModel`` (eval mode, no gradients)."""

    def __init__(self, model: TransformerModel, *, bos_id: int, eos_id: int, kv_cache: bool = True,
                 slide: Optional[int] = None, batch_docs: int = 64):
        self.model = model.eval()
        self.vocab_size = model.vocab_size
        self.bos_id, self.eos_id = bos_id, eos_id
        self.context = model.cfg.context
        self.slide = self.context // 2 if slide is None else int(slide)
        if not 1 <= self.slide < self.context:
            raise InputError(f"slide must lie in [1, {self.context - 1}] for a context of {self.context}, got {slide}")
        self.kv_cache = kv_cache
        self.batch_docs = batch_docs
        self.device = next(model.parameters()).device

    @classmethod
    def from_dir(cls, model_dir: Path, *, bos_id: int, eos_id: int, device: str = "cpu",
                 **kwargs) -> "TransformerLanguageModel":
        return cls(load_model(model_dir, device=device), bos_id=bos_id, eos_id=eos_id, **kwargs)

    @torch.no_grad()
    def _read(self, window: torch.Tensor, cache: Optional[KVCache], position: int) -> TransformerState:
        """State after ``window``; with ``cache`` only its last token is run (the rest is in the cache)."""
        if cache is None:
            logits, new_cache = self.model.forward_cached(window)
        else:
            logits, new_cache = self.model.forward_cached(window[:, -1:], cache)
        logprobs = torch.log_softmax(logits[:, -1].double(), dim=-1)
        return TransformerState(new_cache if self.kv_cache else None, window, position, logprobs)

    def initial_state(self, batch_size: int) -> TransformerState:
        start = torch.full((batch_size, 1), self.eos_id, dtype=torch.long, device=self.device)
        return self._read(start, None, 1)

    def next_logprobs(self, state: TransformerState) -> np.ndarray:
        return state.logprobs.cpu().numpy()

    def advance(self, state: TransformerState, tokens: np.ndarray) -> TransformerState:
        tokens = torch.as_tensor(np.asarray(tokens, dtype=np.int64), device=self.device).view(-1, 1)
        self._check(tokens)
        tokens = torch.where(tokens == self.bos_id, torch.full_like(tokens, self.eos_id), tokens)
        if state.window.size(1) < self.context:
            return self._read(torch.cat([state.window, tokens], dim=1), state.cache, state.position + 1)
        # The window is full: slide by ``slide`` tokens and re-encode from position 0 (see module docstring).
        window = torch.cat([state.window[:, self.slide :], tokens], dim=1)
        return self._read(window, None, state.position + 1)

    def select(self, state: TransformerState, rows: np.ndarray) -> TransformerState:
        idx = torch.as_tensor(np.asarray(rows, dtype=np.int64), device=self.device)
        cache = None
        if state.cache is not None:
            cache = tuple((k.index_select(0, idx), v.index_select(0, idx)) for k, v in state.cache)
        return TransformerState(cache, state.window.index_select(0, idx), state.position,
                                state.logprobs.index_select(0, idx))

    def _check(self, tokens: torch.Tensor) -> None:
        if tokens.numel() and (int(tokens.max()) >= self.vocab_size or int(tokens.min()) < 0):
            raise InputError(
                f"token ids outside [0, {self.vocab_size}) given to a Transformer trained on {self.vocab_size} "
                f"tokens; score with the tokenizer the model was trained with"
            )

    def windows(self, length: int) -> list[tuple[int, int, int]]:
        """``(start, stop, first_used)`` of the windows scoring a document of ``length`` predictions.

        Inputs ``s_start .. s_{stop-1}`` are read from position 0; the predictions after reading
        ``s_first_used .. s_{stop-1}`` are kept.

        >>> lm.windows(10)  # context 4, slide 2   # doctest: +SKIP
        [(0, 4, 0), (2, 6, 4), (4, 8, 6), (6, 10, 8)]
        """
        c, s = self.context, self.slide
        out = [(0, min(length, c), 0)]
        k = 1
        while c + (k - 1) * s < length:
            out.append((k * s, min(length, k * s + c), c + (k - 1) * s))
            k += 1
        return out

    @torch.no_grad()
    def score(self, ids: np.ndarray) -> np.ndarray:
        """log P(ids[t] | its document's earlier tokens) for every position (float64, natural log)."""
        ids = np.asarray(ids, dtype=np.int64)
        out = np.zeros(len(ids), dtype=np.float64)
        if len(ids) == 0:
            return out
        self._check(torch.from_numpy(ids))
        ends = np.flatnonzero(ids == self.eos_id) + 1
        if not len(ends) or ends[-1] != len(ids):  # a trailing document without its </s>
            ends = np.concatenate([ends, [len(ids)]])
        starts = np.concatenate([[0], ends[:-1]])
        # The input before each token: the previous token, or the </s> start marker at a document start.
        inputs = np.empty_like(ids)
        inputs[1:] = ids[:-1]
        inputs[starts] = self.eos_id
        inputs[inputs == self.bos_id] = self.eos_id
        spans = [(s + a, b - a, u - a) for s, e in zip(starts, ends) for a, b, u in self.windows(int(e - s))]
        spans = np.array(spans, dtype=np.int64).reshape(-1, 3)  # global start, length, first kept offset
        spans = spans[np.argsort(-spans[:, 1], kind="stable")]
        rows = max(1, min(self.batch_docs, _LOGIT_BUDGET // (self.context * self.vocab_size)))
        for b in range(0, len(spans), rows):
            self._score_windows(ids, inputs, spans[b : b + rows], out)
        return out

    def _score_windows(self, ids: np.ndarray, inputs: np.ndarray, spans: np.ndarray, out: np.ndarray) -> None:
        start, length, used = spans[:, 0:1], spans[:, 1:2], spans[:, 2:3]
        offsets = np.arange(int(length.max()))[None, :]
        real = offsets < length
        idx = np.where(real, start + offsets, 0)
        x = torch.from_numpy(np.where(real, inputs[idx], self.eos_id)).to(self.device)  # pads after the end
        y = torch.from_numpy(np.where(real, ids[idx], 0)).to(self.device)
        logits, _ = self.model.forward_cached(x)
        logp = torch.log_softmax(logits.float(), dim=-1).gather(2, y.unsqueeze(2)).squeeze(2)
        keep = real & (offsets >= used)
        out[idx[keep]] = logp.double().cpu().numpy()[keep]
