"""Configuration shared by the neural stages: how a neural language model is trained.

``TrainingConfig`` is the training schedule; ``arcore.rnn.config.RNNConfig`` and
``arcore.transformer.config.TransformerConfig`` extend it with their model shapes, and one loop
(``arcore.neural.train``) trains both. Torch-free, so the pipeline config validates without loading torch.
"""

from __future__ import annotations

from typing import Literal, Optional

from pydantic import BaseModel, ConfigDict, Field


class TrainingConfig(BaseModel):
    """The training schedule of a neural language model; ``RNNConfig`` and ``TransformerConfig`` extend it
    with their shapes (one loop, ``arcore.neural.train``, trains both).

    dropout: on the model's inputs/outputs (and attention, for the Transformer) while training.
    batch_size: parallel streams per update (per process under DDP); eval_batch_size: the same for evaluation.
    lr: initial learning rate. lr_schedule: ``plateau`` divides it by ``lr_anneal`` after every epoch whose
        valid loss does not improve on the best so far (word_language_model's annealing); ``cosine`` decays
        it to 5% of ``lr`` over the run, per step.
    clip: gradient norm clipping threshold (``torch.nn.utils.clip_grad_norm_``).
    optimizer: ``sgd`` (plain, as word_language_model) or ``adamw`` (with ``weight_decay``).
    checkpoint_every: write a resumable checkpoint every that many optimizer steps (0: only at epoch ends).
    max_steps: stop after that many optimizer steps in total (None or 0: run all epochs). The token budget
        of a run is ``max_steps * batch_size * bptt`` (``context`` for the Transformer); the scale runs set
        it, so a gigabyte corpus trains for a fixed budget instead of an epoch.
    max_valid_tokens: validate on a deterministic sample of whole valid documents holding at most that
        many tokens (``arcore.heldout.sample_documents``) instead of the whole valid split (None or 0),
        both per epoch and for the stage's valid figures: bounds the validation time of a large corpus.
    device: ``auto`` picks CUDA when available, else CPU.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    dropout: float = Field(0.0, ge=0.0, lt=1.0)
    batch_size: int = Field(16, ge=1, le=65536)
    lr: float = Field(0.004, gt=0.0, le=1000.0)
    lr_anneal: float = Field(4.0, ge=1.0, le=1000.0)
    lr_schedule: Literal["plateau", "cosine"] = "plateau"
    clip: float = Field(0.25, gt=0.0)
    epochs: int = Field(4, ge=1, le=10_000)
    optimizer: Literal["sgd", "adamw"] = "adamw"
    weight_decay: float = Field(0.01, ge=0.0, le=1.0)
    seed: int = Field(1234, ge=0)
    checkpoint_every: int = Field(200, ge=0)
    max_steps: Optional[int] = Field(None, ge=0)
    max_valid_tokens: Optional[int] = Field(None, ge=0)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    eval_batch_size: int = Field(32, ge=1, le=65536)

    @property
    def step_limit(self) -> Optional[int]:
        """``max_steps`` with 0 read as no limit: ``TrainingConfig(max_steps=0).step_limit is None``."""
        return self.max_steps or None
