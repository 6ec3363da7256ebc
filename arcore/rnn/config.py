"""Configuration of the ``rnn`` stage: the model shape and how it is trained.

One frozen pydantic model, composed by the pipeline config as its ``rnn`` section and saved, fully
resolved, with every checkpoint and final model (``config.json``).

The defaults are sized for the default pipeline on a laptop: a 1-layer LSTM of 192 units with tied
embeddings, AdamW at lr 0.004, batch 16, bptt 32, 4 epochs. On Tiny Shakespeare (304k training tokens
with a 4,096-token byte-level BPE) it trains about 4,760 steps in about 80 s on 2 CPU cores and reaches
1.915 test bits per byte against 1.940 for the interpolated modified Kneser-Ney 5-gram on the same ids
(the default pipeline's evaluate stage). Measured alternatives on the same data (valid bits per byte,
KN 5-gram 1.997): 128 units, batch 32, 3 epochs 2.001; 128 units, batch 16, 4 epochs 1.972; 192 units,
batch 32, 3 epochs 1.990; 2 layers of 128 2.262; batch 8 2.007. Smaller batches (more updates) and width
helped, depth did not. PyTorch's ``word_language_model`` defaults (LSTM, 2 x 200, bptt 35, batch 20,
SGD lr 20, clip 0.25, dropout 0.2) are one override away::

    RNNConfig(emb_size=200, hidden_size=200, layers=2, dropout=0.2, batch_size=20, bptt=35, lr=20.0,
              clip=0.25, epochs=40, tie_weights=False)
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from arcore.neural.config import TrainingConfig

Cell = Literal["rnn_tanh", "rnn_relu", "gru", "lstm"]

__all__ = ["AdditionConfig", "Cell", "RNNConfig", "TrainingConfig"]


class RNNConfig(TrainingConfig):
    """Model shape of a recurrent language model, plus the training schedule (``TrainingConfig``).

    cell: ``rnn_tanh``/``rnn_relu`` (Elman), ``gru`` or ``lstm``.
    tie_weights: share the embedding and output matrices (Press & Wolf 2017); needs
        ``emb_size == hidden_size``.
    bptt: truncated back-propagation window length (time steps per update).
    """

    cell: Cell = "lstm"
    emb_size: int = Field(192, ge=1, le=8192)
    hidden_size: int = Field(192, ge=1, le=8192)
    layers: int = Field(1, ge=1, le=16)
    tie_weights: bool = True
    bptt: int = Field(32, ge=1, le=100_000)

    @model_validator(mode="after")
    def _tied_sizes_match(self) -> "RNNConfig":
        if self.tie_weights and self.emb_size != self.hidden_size:
            raise ValueError(
                f"tie_weights needs emb_size == hidden_size (got {self.emb_size} and "
                f"{self.hidden_size}); set rnn.tie_weights: false or make the sizes equal"
            )
        return self


class AdditionConfig(BaseModel):
    """The binary-addition toy (``arcore.rnn.toy_addition``): the lecture's Elman RNN shapes and training."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    hidden_size: int = Field(16, ge=1, le=1024)
    train_bits: int = Field(8, ge=2, le=30)
    eval_bits: tuple[int, ...] = (8, 16, 32, 64)
    eval_samples: int = Field(1000, ge=1)
    steps: int = Field(1500, ge=1)
    batch_size: int = Field(128, ge=1)
    lr: float = Field(0.02, gt=0.0)
    seed: int = Field(0, ge=0)
