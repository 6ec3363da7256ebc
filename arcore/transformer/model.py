"""The causal Transformer language model: context processed by masking instead of recurrence.

An RNN summarises ``x_<t`` in a state carried from step to step; a decoder-only Transformer reads the whole
window at once and gets autoregression from a *mask*: position ``t`` may attend to positions ``<= t`` only,
so the output at ``t`` is a function of ``x_0..x_t`` and predicts ``x_{t+1}`` (Vaswani et al. 2017; the
GPT-2 layout of Radford et al. 2019 as nanoGPT writes it):

    h_0 = tok_emb[x] + pos_emb[0..T-1]
    h_l = h_{l-1} + Attn(LN(h_{l-1}));  h_l = h_l + MLP(LN(h_l))          (pre-norm blocks)
    logits = LN(h_L) @ tok_emb^T                                          (tied head)

Attention is ``torch.nn.functional.scaled_dot_product_attention(..., is_causal=True)``: softmax over
``q k^T / sqrt(d_head)`` with the upper triangle masked to ``-inf``.

Input/output for training (the layout the shared trainer and the RNN use): ids ``(T, B)`` time-major,
``forward(ids, hidden=None) -> (logits (T, B, V), None)``; no state crosses windows, ``T <= context``.
For decoding, ``forward_cached(ids (B, T), cache)`` runs new tokens against a key/value cache of the
earlier positions and returns the extended cache (``KVCache``): one token costs one position's work
instead of a pass over the whole prefix.

    >>> m = TransformerModel(TransformerConfig(d_model=16, heads=2, context=8), vocab_size=10)
    >>> logits, state = m(torch.zeros(5, 3, dtype=torch.long))
    >>> tuple(logits.shape), state
    ((5, 3, 10), None)
"""

from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from arcore.errors import InputError
from arcore.transformer.config import TransformerConfig

# Per layer: keys and values ``(B, heads, L, d_head)`` of the L positions read so far.
KVCache = tuple[tuple[torch.Tensor, torch.Tensor], ...]


class CausalSelfAttention(nn.Module):
    """Multi-head self-attention where position t sees positions <= t only."""

    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        self.heads, self.dropout = cfg.heads, cfg.dropout
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model)
        self.proj = nn.Linear(cfg.d_model, cfg.d_model)
        self.resid_drop = nn.Dropout(cfg.dropout)

    def _split(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        b, t, d = x.shape
        q, k, v = self.qkv(x).split(d, dim=2)
        return tuple(z.view(b, t, self.heads, d // self.heads).transpose(1, 2) for z in (q, k, v))

    def forward(self, x: torch.Tensor, past: Optional[tuple[torch.Tensor, torch.Tensor]] = None):
        """``x (B, T, d)`` -> ``(B, T, d)`` and this layer's keys/values including ``past``'s.

        Without ``past`` the mask is the causal triangle. With ``past`` (L cached positions), only ``T == 1``
        is allowed: the one new query may see every cached key and itself, so no mask is needed.
        """
        q, k, v = self._split(x)
        if past is not None:
            if x.size(1) != 1:
                raise ValueError("a key/value cache extends one token at a time")
            k, v = torch.cat([past[0], k], dim=2), torch.cat([past[1], v], dim=2)
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0,
                                           is_causal=past is None)
        y = y.transpose(1, 2).reshape(x.shape)
        return self.resid_drop(self.proj(y)), (k, v)

    def weights(self, x: torch.Tensor) -> torch.Tensor:
        """The attention probabilities ``(B, heads, T, T)`` SDPA uses on ``x`` (eval mode), written out."""
        q, k, _ = self._split(x)
        scores = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))
        t = x.size(1)
        future = torch.ones(t, t, dtype=torch.bool, device=x.device).triu(1)
        return torch.softmax(scores.masked_fill(future, float("-inf")), dim=-1)


class Block(nn.Module):
    """Pre-norm residual block: ``x + Attn(LN(x))``, then ``x + MLP(LN(x))``."""

    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        self.ln1 = nn.LayerNorm(cfg.d_model)
        self.attn = CausalSelfAttention(cfg)
        self.ln2 = nn.LayerNorm(cfg.d_model)
        self.mlp = nn.Sequential(
            nn.Linear(cfg.d_model, cfg.ff_mult * cfg.d_model), nn.GELU(),
            nn.Linear(cfg.ff_mult * cfg.d_model, cfg.d_model), nn.Dropout(cfg.dropout),
        )

    def forward(self, x: torch.Tensor, past=None):
        a, kv = self.attn(self.ln1(x), past)
        x = x + a
        return x + self.mlp(self.ln2(x)), kv


class TransformerModel(nn.Module):
    """Token + learned position embeddings, ``layers`` pre-norm blocks, final LayerNorm, tied head."""

    def __init__(self, cfg: TransformerConfig, vocab_size: int):
        super().__init__()
        self.cfg = cfg
        self.vocab_size = vocab_size
        self.tok_emb = nn.Embedding(vocab_size, cfg.d_model)
        self.pos_emb = nn.Embedding(cfg.context, cfg.d_model)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.layers))
        self.ln_f = nn.LayerNorm(cfg.d_model)
        self._init_weights()

    def _init_weights(self) -> None:
        # GPT-2: N(0, 0.02) weights, zero biases, residual projections scaled by 1/sqrt(2 * layers) so the
        # residual stream's variance does not grow with depth.
        for name, p in self.named_parameters():
            if name.endswith("bias"):
                nn.init.zeros_(p)
            elif p.dim() >= 2:
                std = 0.02 / math.sqrt(2 * self.cfg.layers) if name.endswith(("proj.weight", "mlp.2.weight")) else 0.02
                nn.init.normal_(p, 0.0, std)

    def init_hidden(self, batch_size: int) -> None:
        """No state crosses training windows: each window is read on its own."""
        return None

    def optimizer_groups(self, weight_decay: float) -> list[dict]:
        """AdamW groups: decay the weight matrices and the token embedding, not biases, gains or positions."""
        decay = [p for n, p in self.named_parameters() if p.dim() >= 2 and n != "pos_emb.weight"]
        rest = [p for n, p in self.named_parameters() if p.dim() < 2 or n == "pos_emb.weight"]
        return [{"params": decay, "weight_decay": weight_decay}, {"params": rest, "weight_decay": 0.0}]

    def _embed(self, ids: torch.Tensor, start: int) -> torch.Tensor:
        end = start + ids.size(1)
        if end > self.cfg.context:
            raise InputError(
                f"{end} positions exceed the model's context of {self.cfg.context}; "
                f"use TransformerLanguageModel (it slides a window) or raise transformer.context and retrain"
            )
        pos = torch.arange(start, end, device=ids.device)
        return self.drop(self.tok_emb(ids) + self.pos_emb(pos))

    def forward_cached(self, ids: torch.Tensor, cache: Optional[KVCache] = None) -> tuple[torch.Tensor, KVCache]:
        """Batch-first ``ids (B, T)`` after the positions held in ``cache`` -> logits ``(B, T, V)``, new cache.

        ``cache=None`` reads ``ids`` from position 0 (any ``T <= context``); with a cache, ``T`` must be 1.
        """
        start = 0 if cache is None else cache[0][0].size(2)
        x = self._embed(ids, start)
        new_cache = []
        for i, block in enumerate(self.blocks):
            x, kv = block(x, None if cache is None else cache[i])
            new_cache.append(kv)
        return self.ln_f(x) @ self.tok_emb.weight.t(), tuple(new_cache)

    def forward(self, ids: torch.Tensor, hidden: None = None) -> tuple[torch.Tensor, None]:
        """Time-major ``ids (T, B)`` -> next-token logits ``(T, B, V)`` (the trainer's layout), ``None``."""
        logits, _ = self.forward_cached(ids.t())
        return logits.transpose(0, 1), None

    @torch.no_grad()
    def attention_weights(self, ids: torch.Tensor, layer: int = -1) -> torch.Tensor:
        """Attention probabilities ``(B, heads, T, T)`` of block ``layer`` on batch-first ``ids (B, T)``."""
        was_training = self.training
        self.eval()
        try:
            x = self._embed(ids, 0)
            layer = layer % len(self.blocks)
            for block in self.blocks[:layer]:
                x, _ = block(x)
            return self.blocks[layer].attn.weights(self.blocks[layer].ln1(x))
        finally:
            self.train(was_training)
