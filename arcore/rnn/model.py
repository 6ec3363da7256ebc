"""The recurrent language model: embedding -> RNN/GRU/LSTM -> linear head over the vocabulary.

Input: token ids laid out time-major, ``(T, B)`` (word_language_model's layout: column ``b`` is one
contiguous stream), and the hidden state left by the previous window. Output: logits ``(T, B, V)`` for the
*next* token at every position, and the new hidden state. Training minimises cross-entropy between
``logits[t]`` and ``ids[t + 1]`` (``next_token_loss``, shared with the Transformer in ``arcore.neural.loss``).

The recurrence is torch's own ``nn.RNN`` (Elman, tanh or relu), ``nn.GRU`` or ``nn.LSTM``, so CPU and cuDNN
kernels are used unchanged. Hidden state: a tensor ``(layers, B, H)``, or for the LSTM a pair
``(h, c)`` of such tensors.

Example::

    >>> m = RNNModel(RNNConfig(cell="gru", emb_size=8, hidden_size=8), vocab_size=10)
    >>> logits, h = m(torch.zeros(5, 3, dtype=torch.long), m.init_hidden(3))
    >>> tuple(logits.shape), tuple(h.shape)
    ((5, 3, 10), (1, 3, 8))
"""

from __future__ import annotations

from typing import Union

import torch
from torch import nn

from arcore.neural.loss import detach_hidden, next_token_loss
from arcore.rnn.config import RNNConfig

__all__ = ["Hidden", "RNNModel", "detach_hidden", "next_token_loss"]

Hidden = Union[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]

_RECURRENCES = {
    "rnn_tanh": lambda e, h, n, d: nn.RNN(e, h, n, nonlinearity="tanh", dropout=d),
    "rnn_relu": lambda e, h, n, d: nn.RNN(e, h, n, nonlinearity="relu", dropout=d),
    "gru": lambda e, h, n, d: nn.GRU(e, h, n, dropout=d),
    "lstm": lambda e, h, n, d: nn.LSTM(e, h, n, dropout=d),
}


class RNNModel(nn.Module):
    """Embedding, dropout, a stack of recurrent layers, dropout, linear head (optionally tied)."""

    def __init__(self, cfg: RNNConfig, vocab_size: int):
        super().__init__()
        self.cfg = cfg
        self.vocab_size = vocab_size
        self.drop = nn.Dropout(cfg.dropout)
        self.encoder = nn.Embedding(vocab_size, cfg.emb_size)
        # Dropout between stacked layers only exists for layers > 1 (torch warns otherwise).
        inner = cfg.dropout if cfg.layers > 1 else 0.0
        self.rnn = _RECURRENCES[cfg.cell](cfg.emb_size, cfg.hidden_size, cfg.layers, inner)
        self.decoder = nn.Linear(cfg.hidden_size, vocab_size)
        if cfg.tie_weights:
            self.decoder.weight = self.encoder.weight
        self._init_weights()

    def _init_weights(self) -> None:
        # word_language_model's initialisation: small uniform embeddings/head, zero head bias.
        nn.init.uniform_(self.encoder.weight, -0.1, 0.1)
        nn.init.zeros_(self.decoder.bias)
        if not self.cfg.tie_weights:
            nn.init.uniform_(self.decoder.weight, -0.1, 0.1)

    def init_hidden(self, batch_size: int) -> Hidden:
        """The zero state for ``batch_size`` streams, on the model's device and dtype."""
        w = self.encoder.weight
        shape = (self.cfg.layers, batch_size, self.cfg.hidden_size)
        if self.cfg.cell == "lstm":
            return (w.new_zeros(shape), w.new_zeros(shape))
        return w.new_zeros(shape)

    def recurrent_states(self, ids: torch.Tensor, hidden: Hidden) -> tuple[torch.Tensor, Hidden]:
        """Top-layer outputs ``(T, B, H)`` (the h_t the head reads) and the final hidden state."""
        emb = self.drop(self.encoder(ids))
        output, hidden = self.rnn(emb, hidden)
        return output, hidden

    def forward(self, ids: torch.Tensor, hidden: Hidden) -> tuple[torch.Tensor, Hidden]:
        output, hidden = self.recurrent_states(ids, hidden)
        return self.decoder(self.drop(output)), hidden
