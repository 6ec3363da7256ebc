"""The saved Transformer: ``model.pt`` (state dict) and ``config.json``, atomic, read without pickle.

Same files and the same guarantees as the RNN's model directory (``arcore.neural.checkpoint``'s atomic
writers and ``weights_only=True`` loader are reused): ``config.json`` holds the format tag, the vocabulary
size and the resolved ``TransformerConfig`` under ``transformer``. Training checkpoints
(``checkpoint.pt``) are written by the shared trainer with the tag ``CHECKPOINT_FORMAT``, so an RNN
checkpoint is never resumed as a Transformer or the other way round.
"""

from __future__ import annotations

import json
from pathlib import Path

from arcore.errors import StageError
from arcore.neural.checkpoint import MODEL_CONFIG, MODEL_WEIGHTS, atomic_torch_save, atomic_write_text, safe_torch_load
from arcore.transformer.config import TransformerConfig
from arcore.transformer.model import TransformerModel

CHECKPOINT_FORMAT = "arpipe-transformer-checkpoint-v1"
MODEL_FORMAT = "arpipe-transformer-model-v1"

__all__ = ["CHECKPOINT_FORMAT", "MODEL_CONFIG", "MODEL_FORMAT", "MODEL_WEIGHTS", "load_model", "save_model"]


def save_model(model_dir: Path, model: TransformerModel, extra: dict | None = None) -> None:
    """Write ``model.pt`` and ``config.json`` into ``model_dir`` (created if missing)."""
    bare: TransformerModel = getattr(model, "module", model)  # unwrap DistributedDataParallel
    model_dir = Path(model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    atomic_torch_save({k: v.detach().cpu() for k, v in bare.state_dict().items()}, model_dir / MODEL_WEIGHTS)
    meta = {"format": MODEL_FORMAT, "vocab_size": bare.vocab_size, "transformer": bare.cfg.model_dump(mode="json"),
            **(extra or {})}
    atomic_write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n", model_dir / MODEL_CONFIG)


def load_model(model_dir: Path, *, vocab_size: int | None = None, device: str = "cpu") -> TransformerModel:
    """Rebuild the model ``save_model`` wrote (eval mode); refuse a vocabulary size other than ``vocab_size``."""
    model_dir = Path(model_dir)
    path = model_dir / MODEL_CONFIG
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise StageError(f"{path} does not exist; is {model_dir} a transformer model directory?") from None
    except json.JSONDecodeError as exc:
        raise StageError(f"{path} is not valid JSON ({exc.msg}); retrain the model") from None
    if not isinstance(meta, dict) or meta.get("format") != MODEL_FORMAT:
        raise StageError(f"{path} is not an arpipe transformer model config")
    if vocab_size is not None and meta["vocab_size"] != vocab_size:
        raise StageError(
            f"model in {model_dir} has a vocabulary of {meta['vocab_size']} tokens but the data use "
            f"{vocab_size}; use the tokenizer the model was trained with"
        )
    model = TransformerModel(TransformerConfig.model_validate(meta["transformer"]), meta["vocab_size"])
    state = safe_torch_load(model_dir / MODEL_WEIGHTS, "model weights")
    try:
        model.load_state_dict(state)
    except (RuntimeError, TypeError, AttributeError) as exc:
        raise StageError(f"model weights in {model_dir} do not match its config.json ({exc!s:.120}); retrain") from None
    return model.to(device).eval()
