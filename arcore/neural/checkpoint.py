"""Resumable training checkpoints and the atomic, pickle-free file primitives every saved neural model uses.

``checkpoint.pt`` holds everything needed to continue a run exactly where it stopped: model and optimizer
state dicts, the learning-rate schedule state, the hidden state carried between BPTT windows (``None`` for
a model that carries none), the RNG states of torch (CPU and CUDA), numpy and python, the data position
(epoch, next window, step), and a sha256 of the token ids trained on (a relaunch on changed shards is
refused). A format tag per model family (``arpipe-rnn-checkpoint-v1``, ``arpipe-transformer-checkpoint-v1``)
keeps one family's checkpoint from being resumed as another's. Relaunching from it on CPU reproduces an
uninterrupted run bit for bit (tests/arcore/test_rnn_resume.py).

Every file is written with ``torch.save`` to a temporary name in the same directory, fsynced, then
``os.replace``d, so a crash leaves either the old file or the new one; every file is read with
``torch.load(..., weights_only=True)``: tensors, numbers, strings, lists, tuples and dicts only, so a
hostile file cannot run code. numpy's RNG state is therefore stored as a tensor, never as an array object.
The model directories themselves (``model.pt`` + ``config.json``) are written by each family's own
``checkpoint`` module with these primitives.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from arcore.errors import StageError
from arcore.io import atomic_write_with

CHECKPOINT_NAME = "checkpoint.pt"
MODEL_WEIGHTS = "model.pt"
MODEL_CONFIG = "config.json"
# Settings a relaunch may change without invalidating the checkpoint (train longer, checkpoint more often).
RESUMABLE_CHANGES = frozenset({"epochs", "max_steps", "checkpoint_every", "device"})


def atomic_torch_save(obj: Any, path: Path) -> None:
    """``torch.save`` to ``path`` through a temporary file in the same directory (crash-safe)."""
    atomic_write_with(path, lambda f: torch.save(obj, f), sync_dir=True)


def atomic_write_text(text: str, path: Path) -> None:
    atomic_write_with(path, lambda f: f.write(text.encode("utf-8")), sync_dir=True)


def safe_torch_load(path: Path, what: str) -> Any:
    """``torch.load(weights_only=True)`` on CPU, turning any unreadable file into a one-line StageError."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise StageError(f"{what} {path} does not exist") from None
    except Exception as exc:  # torch raises RuntimeError, UnpicklingError, EOFError, zip errors...
        raise StageError(
            f"{what} {path} is corrupt or not an arpipe file ({type(exc).__name__}); "
            f"delete it and rerun to start from scratch"
        ) from None


def capture_rng_state() -> dict:
    """RNG states of python, numpy (legacy global generator) and torch, as weights_only-loadable values."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "python": random.getstate(),
        "numpy": {
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def restore_rng_state(state: dict) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    npst = state["numpy"]
    np.random.set_state(
        ("MT19937", npst["keys"].numpy().astype(np.uint32), npst["pos"], npst["has_gauss"], npst["cached_gaussian"])
    )
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: Path, payload: dict, fmt: str) -> None:
    """Write a training checkpoint; ``payload`` is built by the trainer (see module docstring)."""
    atomic_torch_save({"format": fmt, **payload}, path)


def load_checkpoint(path: Path, cfg, vocab_size: int, *, fmt: str, section: str) -> dict:
    """Read a checkpoint and check it belongs to this run (format ``fmt``, same config and vocabulary).

    ``cfg`` may be any frozen pydantic config (``RNNConfig``, ``TransformerConfig``): the saved one is
    re-read with ``type(cfg)`` and compared field by field, except the ``RESUMABLE_CHANGES``.
    """
    ckpt = safe_torch_load(path, "checkpoint")
    if not isinstance(ckpt, dict) or ckpt.get("format") != fmt:
        raise StageError(f"checkpoint {path} is not an arpipe {section} checkpoint; delete it to start afresh")
    if ckpt["vocab_size"] != vocab_size:
        raise StageError(
            f"checkpoint {path} was trained with a vocabulary of {ckpt['vocab_size']} tokens but the shards "
            f"use {vocab_size}; delete the checkpoint or rebuild with the matching tokenizer"
        )
    saved = type(cfg).model_validate_json(ckpt["config"])
    diff = sorted(
        k for k in type(cfg).model_fields if k not in RESUMABLE_CHANGES and getattr(saved, k) != getattr(cfg, k)
    )
    if diff:
        raise StageError(
            f"checkpoint {path} was written with a different {section} config ({', '.join(diff)} differ); "
            f"delete it to start afresh or restore those settings"
        )
    return ckpt
