"""Configuration of the ``transformer`` stage: the shape of a decoder-only Transformer and its training.

One frozen pydantic model, composed by the pipeline config as its ``transformer`` section and saved,
fully resolved, with every checkpoint and final model (``config.json``). The training fields mean what they
mean in ``RNNConfig`` (the same loop trains both, ``arcore.neural.train``), with one renaming: the window
length is ``context``, the number of positions the model attends over, which is also the length of the
training windows cut from the shard streams (``cfg.bptt`` is an alias the shared trainer reads).

The defaults are sized for the default pipeline on a laptop CPU: 2 pre-norm blocks of width 128 with 4
heads, a context of 128 tokens, no dropout, AdamW at 2e-3; with the 4,096-token BPE of the default
pipeline that is about 0.93M parameters, 0.52M of them in the (tied) embedding.

    >>> TransformerConfig(layers=4, d_model=256, heads=8).head_size
    32
"""

from __future__ import annotations

from pydantic import Field, model_validator

from arcore.neural.config import TrainingConfig


class TransformerConfig(TrainingConfig):
    """Model shape and training schedule of a causal (masked self-attention) language model.

    layers: number of pre-norm blocks (attention + MLP).
    d_model: width of the residual stream; the embedding and the tied output matrix are ``V x d_model``.
    heads: attention heads per block; must divide ``d_model``.
    ff_mult: the MLP's hidden width is ``ff_mult * d_model`` (4 in GPT-2).
    context: the longest context the model attends over (size of the learned position table) and the
        length of the training windows. Scoring and decoding beyond it slide a window (see
        ``arcore.transformer.lm``).
    dropout: on embeddings, attention probabilities and residual branches while training.
    The training schedule is ``TrainingConfig``'s, with defaults of its own (batch 32, lr 2e-3, clip 1.0,
        3 epochs). AdamW decays only matrices (not biases, LayerNorm gains or the position table), as
        nanoGPT does; the tied token embedding is a matrix and is decayed.
    """

    layers: int = Field(2, ge=1, le=64)
    d_model: int = Field(128, ge=8, le=8192)
    heads: int = Field(4, ge=1, le=128)
    ff_mult: int = Field(4, ge=1, le=16)
    context: int = Field(128, ge=2, le=100_000)
    batch_size: int = Field(32, ge=1, le=65536)
    lr: float = Field(2e-3, gt=0.0, le=1000.0)
    clip: float = Field(1.0, gt=0.0)
    epochs: int = Field(3, ge=1, le=10_000)

    @model_validator(mode="after")
    def _heads_divide_width(self) -> "TransformerConfig":
        if self.d_model % self.heads:
            raise ValueError(
                f"heads ({self.heads}) must divide d_model ({self.d_model}); set transformer.heads to a "
                f"divisor of d_model, e.g. {max(h for h in (1, 2, 4, 8, 16) if self.d_model % h == 0)}"
            )
        return self

    @property
    def bptt(self) -> int:
        """The training window length the shared trainer reads: the context length."""
        return self.context

    @property
    def head_size(self) -> int:
        return self.d_model // self.heads
