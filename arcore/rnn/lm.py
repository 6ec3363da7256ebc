"""A trained recurrent model behind the state-in/state-out ``arcore.lm.LanguageModel`` interface.

State: the RNN hidden state of a batch of contexts plus the log-probabilities of the next token it
implies (``RNNState``). ``advance`` runs one recurrent step; ``select`` is ``index_select`` on the batch
axis of both.

Document starts. The model is trained on the shard stream, where every document follows the previous
document's ``</s>``; ``<s>`` never occurs in it, so its embedding is untrained. A document start is
therefore the state reached by reading ``</s>`` from the zero hidden state, and ``<s>`` given to ``advance``
is read as ``</s>``. ``score`` resets to that state at the start of the array and after every ``</s>``, so
each document is scored on its own, as the n-gram models score it. (Training carries the hidden state
across documents; the reset costs a little on each document's first tokens and makes scores independent
of document order.)

Vectorisation. ``score`` does not step token by token: it cuts the array into documents, sorts them by
length, stacks up to ``batch_docs`` of them as the columns of a padded ``(time, batch)`` tensor, and runs
the RNN over that tensor in chunks of time (carrying the hidden state between chunks, bounding the
``time x batch x vocab`` logits in memory). Padding sits after each document's end, and the RNN is causal,
so it never changes a real position's score.

    >>> lm = RNNLanguageModel.from_dir(run_dir / "model", bos_id=1, eos_id=2)   # doctest: +SKIP
    >>> lm.score(np.array([5, 9, 2, 7, 2]))   # two documents: [5, 9, </s>] and [7, </s>]  # doctest: +SKIP
    array([-3.1, -2.7, -0.9, -4.0, -1.2])
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from arcore.errors import InputError
from arcore.rnn.checkpoint import load_model
from arcore.rnn.model import Hidden, RNNModel

_LOGIT_BUDGET = 1 << 24  # floats of logits alive at once in ``score`` (64 MiB)


@dataclass(frozen=True)
class RNNState:
    """Hidden state ``(layers, batch, H)`` (LSTM: a pair) and ``(batch, V)`` float64 next-token log-probs."""

    hidden: Hidden
    logprobs: torch.Tensor


class RNNLanguageModel:
    """``arcore.lm.LanguageModel`` over an ``RNNModel`` (eval mode, no gradients)."""

    def __init__(self, model: RNNModel, *, bos_id: int, eos_id: int, batch_docs: int = 64):
        self.model = model.eval()
        self.vocab_size = model.vocab_size
        self.bos_id = bos_id
        self.eos_id = eos_id
        self.batch_docs = batch_docs
        self.device = next(model.parameters()).device

    @classmethod
    def from_dir(cls, model_dir: Path, *, bos_id: int, eos_id: int, device: str = "cpu") -> "RNNLanguageModel":
        return cls(load_model(model_dir, device=device), bos_id=bos_id, eos_id=eos_id)

    @torch.no_grad()
    def _step(self, hidden: Hidden, tokens: torch.Tensor) -> RNNState:
        tokens = torch.where(tokens == self.bos_id, torch.full_like(tokens, self.eos_id), tokens)
        logits, hidden = self.model(tokens.view(1, -1), hidden)
        return RNNState(hidden, torch.log_softmax(logits[0].double(), dim=-1))

    def initial_state(self, batch_size: int) -> RNNState:
        start = torch.full((batch_size,), self.eos_id, dtype=torch.long, device=self.device)
        return self._step(self.model.init_hidden(batch_size), start)

    def next_logprobs(self, state: RNNState) -> np.ndarray:
        return state.logprobs.cpu().numpy()

    def advance(self, state: RNNState, tokens: np.ndarray) -> RNNState:
        tokens = torch.as_tensor(np.asarray(tokens, dtype=np.int64), device=self.device)
        self._check(tokens)
        return self._step(state.hidden, tokens)

    def select(self, state: RNNState, rows: np.ndarray) -> RNNState:
        idx = torch.as_tensor(np.asarray(rows, dtype=np.int64), device=self.device)
        hidden = state.hidden
        if isinstance(hidden, tuple):
            hidden = tuple(h.index_select(1, idx) for h in hidden)
        else:
            hidden = hidden.index_select(1, idx)
        return RNNState(hidden, state.logprobs.index_select(0, idx))

    def _check(self, tokens: torch.Tensor) -> None:
        if tokens.numel() and (int(tokens.max()) >= self.vocab_size or int(tokens.min()) < 0):
            raise InputError(
                f"token ids outside [0, {self.vocab_size}) given to an RNN trained on {self.vocab_size} "
                f"tokens; score with the tokenizer the model was trained with"
            )

    @torch.no_grad()
    def score(self, ids: np.ndarray) -> np.ndarray:
        """log P(ids[t] | its document's earlier tokens) for every position (float64, natural log)."""
        ids = np.asarray(ids, dtype=np.int64)
        out = np.zeros(len(ids), dtype=np.float64)
        if len(ids) == 0:
            return out
        self._check(torch.from_numpy(ids))
        ends = np.flatnonzero(ids == self.eos_id) + 1
        starts = np.concatenate([[0], ends[:-1]]) if len(ends) else np.array([0])
        if not len(ends) or ends[-1] != len(ids):  # a trailing document without its </s>
            starts = np.concatenate([[0], ends]) if len(ends) else np.array([0])
            ends = np.concatenate([ends, [len(ids)]])
        lengths = ends - starts
        order = np.argsort(-lengths, kind="stable")
        for b in range(0, len(order), self.batch_docs):
            docs = order[b : b + self.batch_docs]
            self._score_batch(ids, starts[docs], lengths[docs], out)
        return out

    def _score_batch(self, ids: np.ndarray, starts: np.ndarray, lengths: np.ndarray, out: np.ndarray) -> None:
        n, longest = len(starts), int(lengths.max())
        targets = np.zeros((longest, n), dtype=np.int64)
        for j, (s, n_tok) in enumerate(zip(starts, lengths)):
            targets[:n_tok, j] = ids[s : s + n_tok]
        inputs = np.empty_like(targets)
        inputs[0] = self.eos_id  # the document-start context (see module docstring)
        inputs[1:] = targets[:-1]
        x = torch.from_numpy(inputs).to(self.device)
        y = torch.from_numpy(targets).to(self.device)
        chunk = max(1, _LOGIT_BUDGET // (n * self.vocab_size))
        hidden = self.model.init_hidden(n)
        scores = torch.empty((longest, n), dtype=torch.float64, device=self.device)
        for t in range(0, longest, chunk):
            logits, hidden = self.model(x[t : t + chunk], hidden)
            logp = torch.log_softmax(logits.float(), dim=-1)
            scores[t : t + chunk] = logp.gather(2, y[t : t + chunk].unsqueeze(2)).squeeze(2).double()
        scores = scores.cpu().numpy()
        for j, (s, n_tok) in enumerate(zip(starts, lengths)):
            out[s : s + n_tok] = scores[:n_tok, j]
