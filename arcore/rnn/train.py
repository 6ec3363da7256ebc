"""Training a recurrent LM: the shared truncated-BPTT loop (``arcore.neural.train``) with the RNN family.

Input: train and valid token ids in the shard layout (memory-mapped ``arcore.neural.data.TokenFile``s or
flat arrays), the vocabulary size, an ``RNNConfig`` and an output directory. Output, in ``out_dir``:
``checkpoint.pt`` (resumable: every ``checkpoint_every`` steps and at each epoch end) and ``model/`` (the
best epoch's weights + ``config.json``, ``arcore.rnn.checkpoint``), and a ``TrainResult``.

What the RNN adds to the shared loop: its model (``RNNModel``), whose hidden state is carried from window
to window and detached at each boundary, its model directory and checkpoint tag, and the vanishing-gradient
diagnostics after each epoch (``||dL/dh_t||`` over the first valid window and the spectral norm of
``W_hh``, ``arcore.rnn.diagnostics``). With ``optimizer="sgd"`` and no dropout, ``train_rnn`` computes
exactly what PyTorch's word_language_model ``main.py`` computes, bit for bit
(tests/arcore/test_rnn_train.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
import torch

from arcore.neural.data import Ids, TokenStreams
from arcore.neural.train import MODEL_DIR, EpochCallback, ModelFamily, StepCallback, TrainResult, train_model
from arcore.rnn import checkpoint as ck
from arcore.rnn.config import RNNConfig
from arcore.rnn.diagnostics import gradient_decay, hidden_gradient_norms, recurrent_spectral_norm
from arcore.rnn.model import RNNModel
from arcore.stage import Progress

__all__ = ["MODEL_DIR", "RNN_FAMILY", "EpochCallback", "StepCallback", "TrainResult", "train_rnn"]


def _rnn_diagnostics(model: torch.nn.Module, valid: TokenStreams, bptt: int) -> tuple[dict, np.ndarray]:
    x, y = valid.window(0, min(bptt, valid.n_rows - 1), next(model.parameters()).device)
    norms = hidden_gradient_norms(model, x, y)
    return {"spectral_norm_whh": recurrent_spectral_norm(model), "grad_h_decay": gradient_decay(norms)}, norms


RNN_FAMILY = ModelFamily(section="rnn", build=RNNModel, save_model=ck.save_model,
                         checkpoint_format=ck.CHECKPOINT_FORMAT, diagnostics=_rnn_diagnostics)


def train_rnn(
    cfg: RNNConfig,
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
    """Train (or resume training) a recurrent LM; files and callbacks: ``arcore.neural.train``."""
    return train_model(RNN_FAMILY, cfg, train_ids, valid_ids, vocab_size, out_dir, valid_bytes=valid_bytes,
                       on_step=on_step, on_epoch=on_epoch, resume=resume, progress=progress)
