"""The saved RNN: ``model.pt`` (the state dict) and ``config.json``, atomic, read without pickle.

``config.json`` holds the resolved ``RNNConfig``, the vocabulary size and the format tag: what evaluation,
decoding and MLflow need. Not ``torch.export``, which would freeze the sequence length. Training
checkpoints (``checkpoint.pt``) are the shared trainer's (``arcore.neural.checkpoint``), tagged
``CHECKPOINT_FORMAT`` so a Transformer checkpoint is never resumed as an RNN; ``load_checkpoint`` and
``save_checkpoint`` here default to that tag. Files are written and read with the primitives of
``arcore.neural.checkpoint`` (temporary file + ``os.replace``; ``torch.load(weights_only=True)``).
"""

from __future__ import annotations

import json
from pathlib import Path

from arcore.errors import StageError
from arcore.neural import checkpoint as shared
from arcore.neural.checkpoint import (CHECKPOINT_NAME, MODEL_CONFIG, MODEL_WEIGHTS, RESUMABLE_CHANGES,
                                      atomic_torch_save, atomic_write_text, safe_torch_load)
from arcore.rnn.config import RNNConfig
from arcore.rnn.model import RNNModel

CHECKPOINT_FORMAT = "arpipe-rnn-checkpoint-v1"
MODEL_FORMAT = "arpipe-rnn-model-v1"

__all__ = ["CHECKPOINT_FORMAT", "CHECKPOINT_NAME", "MODEL_CONFIG", "MODEL_FORMAT", "MODEL_WEIGHTS", "RESUMABLE_CHANGES",
           "load_checkpoint", "load_model", "save_checkpoint", "save_model"]


def save_checkpoint(path: Path, payload: dict, fmt: str = CHECKPOINT_FORMAT) -> None:
    """``arcore.neural.checkpoint.save_checkpoint`` with the RNN's format tag by default."""
    shared.save_checkpoint(path, payload, fmt)


def load_checkpoint(path: Path, cfg: RNNConfig, vocab_size: int, *, fmt: str = CHECKPOINT_FORMAT,
                    section: str = "rnn") -> dict:
    """``arcore.neural.checkpoint.load_checkpoint`` with the RNN's format tag and section by default."""
    return shared.load_checkpoint(path, cfg, vocab_size, fmt=fmt, section=section)


def save_model(model_dir: Path, model: RNNModel, extra: dict | None = None) -> None:
    """Write ``model.pt`` (state dict) and ``config.json`` into ``model_dir`` (created if missing)."""
    model_dir = Path(model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu() for k, v in _unwrap(model).state_dict().items()}
    atomic_torch_save(state, model_dir / MODEL_WEIGHTS)
    meta = {
        "format": MODEL_FORMAT,
        "vocab_size": _unwrap(model).vocab_size,
        "rnn": _unwrap(model).cfg.model_dump(mode="json"),
        **(extra or {}),
    }
    atomic_write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n", model_dir / MODEL_CONFIG)


def load_model(model_dir: Path, *, vocab_size: int | None = None, device: str = "cpu") -> RNNModel:
    """Rebuild the model saved by ``save_model``; refuse a vocabulary size other than ``vocab_size``."""
    model_dir = Path(model_dir)
    try:
        meta = json.loads((model_dir / MODEL_CONFIG).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise StageError(f"{model_dir / MODEL_CONFIG} does not exist; is {model_dir} an rnn model directory?") from None
    except json.JSONDecodeError as exc:
        raise StageError(f"{model_dir / MODEL_CONFIG} is not valid JSON ({exc.msg}); retrain the model") from None
    if meta.get("format") != MODEL_FORMAT:
        raise StageError(f"{model_dir / MODEL_CONFIG} is not an arpipe RNN model config")
    if vocab_size is not None and meta["vocab_size"] != vocab_size:
        raise StageError(
            f"model in {model_dir} has a vocabulary of {meta['vocab_size']} tokens but the data use "
            f"{vocab_size}; use the tokenizer the model was trained with"
        )
    cfg = RNNConfig.model_validate(meta["rnn"])
    model = RNNModel(cfg, meta["vocab_size"])
    state = safe_torch_load(model_dir / MODEL_WEIGHTS, "model weights")
    try:
        model.load_state_dict(state)
    except (RuntimeError, TypeError, AttributeError) as exc:
        raise StageError(f"model weights in {model_dir} do not match its config.json ({exc!s:.120}); retrain") from None
    return model.to(device).eval()


def _unwrap(model) -> RNNModel:
    """The bare model inside a DistributedDataParallel wrapper (or the model itself)."""
    return getattr(model, "module", model)
