"""Training the Transformer: the shared loop (``arcore.neural.train.train_model``) with the Transformer family.

Input and output are ``train_rnn``'s: train/valid ids in the shard layout (memory-mapped or in memory),
the vocabulary size, a ``TransformerConfig`` and an output directory that receives ``checkpoint.pt`` (resumable: every
``checkpoint_every`` steps and at each epoch end) and ``model/`` (best-epoch weights + ``config.json``).

The data are the same ``(time, batch)`` streams cut into windows of ``context`` tokens. What differs from
the RNN is only what the model does with a window: it carries no hidden state, so each window is read on
its own, from position 0 (the first prediction of a window sees one token of context, the last sees
``context``). Windows run across document boundaries as the shard stream does (GPT-2's training layout);
scoring resets at each document start (``arcore.transformer.lm``). The streaming valid loss the trainer
reports per epoch is therefore a little pessimistic against the per-document score the stage reports.

Checkpoints, SIGKILL-safe resume (bit-identical on CPU), plateau annealing, callbacks, bf16 on CUDA and
DDP under torchrun (``python -m arcore.neural.launch --model transformer ...``) come from the shared loop.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from arcore.neural.data import Ids
from arcore.neural.train import EpochCallback, ModelFamily, StepCallback, TrainResult, train_model
from arcore.stage import Progress
from arcore.transformer.checkpoint import CHECKPOINT_FORMAT, save_model
from arcore.transformer.config import TransformerConfig
from arcore.transformer.model import TransformerModel

TRANSFORMER_FAMILY = ModelFamily(section="transformer", build=TransformerModel, save_model=save_model,
                                 checkpoint_format=CHECKPOINT_FORMAT)


def train_transformer(
    cfg: TransformerConfig,
    train_ids: Ids,
    valid_ids: Ids,
    vocab_size: int,
    out_dir: Path,
    *,
    valid_bytes: Optional[int] = None,
    on_step: Optional[StepCallback] = None,
    on_epoch: Optional[EpochCallback] = None,
    resume: bool = True,
    progress: Progress = None,
) -> TrainResult:
    """Train (or resume) a causal Transformer LM; files, callbacks and result as ``train_rnn``'s."""
    return train_model(TRANSFORMER_FAMILY, cfg, train_ids, valid_ids, vocab_size, out_dir, valid_bytes=valid_bytes,
                       on_step=on_step, on_epoch=on_epoch, resume=resume, progress=progress)
