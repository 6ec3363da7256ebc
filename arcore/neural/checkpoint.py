"""Resumable training checkpoints and the atomic, pickle-free file primitives every saved neural model uses.

``checkpoint.pt`` holds everything needed to continue a run exactly where it stopped: model and optimizer
state dicts, the learning-rate schedule state, the hidden state carried between BPTT windows (``None`` for
a model that carries none), the RNG state the training owns (torch's CPU generator, and the training GPU's
when it trains on CUDA), the data position (epoch, next window, step), the last epoch's gradient
diagnostics, and a sha256 of the token ids trained on (a relaunch on changed shards is refused).

Only state the training owns goes in: the file must be a function of the config and the data, so an
interrupted and an uninterrupted run write the same bytes and the stage's output digest is the same
(issue 17). Python's ``random`` and numpy's global generator are not: nothing in training draws from them,
and other code in the process (Prefect, MLflow, the stages before) advances them, so storing them made
every run's ``checkpoint.pt`` different. Checkpoints written before this change still load; their extra
RNG entries are ignored. A format tag per model family (``arpipe-rnn-checkpoint-v1``, ``arpipe-transformer-checkpoint-v1``)
keeps one family's checkpoint from being resumed as another's. Relaunching from it on CPU reproduces an
uninterrupted run bit for bit (tests/arcore/test_rnn_resume.py).

Every file is written with ``torch.save`` to a temporary name in the same directory, fsynced, then
``os.replace``d, so a crash leaves either the old file or the new one; every file is read with
``torch.load(..., weights_only=True)``: tensors, numbers, strings, lists, tuples and dicts only, so a
hostile file cannot run code.
The model directories themselves (``model.pt`` + ``config.json``) are written by each family's own
``checkpoint`` module with these primitives.
"""

from __future__ import annotations

import sys
from collections import OrderedDict
from pathlib import Path
from typing import Any

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


def capture_rng_state(device: torch.device) -> dict:
    """The RNG state training draws from: torch's CPU generator, and ``device``'s when it is a GPU.

    Dropout masks come from these; initial weights too, but those are drawn before the first checkpoint."""
    return {
        "torch": torch.get_rng_state(),
        "cuda": [torch.cuda.get_rng_state(device)] if device.type == "cuda" else [],
    }


def restore_rng_state(state: dict, device: torch.device) -> None:
    """Put back what ``capture_rng_state`` took (a checkpoint's ``python``/``numpy`` entries, written by
    earlier versions, are ignored: training never draws from those generators)."""
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and state.get("cuda"):
        torch.cuda.set_rng_state(state["cuda"][0], device)


def canonical(obj: Any) -> Any:
    """A copy of ``obj`` whose pickle depends only on its values: every string interned, every container new.

    pickle writes an object seen before as a reference to it, and strings are compared by identity: a
    resumed run's history holds the keys it unpickled from the checkpoint beside new dicts whose keys are
    the literals in the code, so without this the same values pickle to other bytes than an uninterrupted
    run's (``"lr"`` written twice instead of once and referenced). Tensors are kept as they are (their
    storages are written by reference either way). ``OrderedDict`` keeps its ``_metadata`` (module versions).

    >>> a, b = canonical({"lr": 1.0}), canonical({"".join(["l", "r"]): 2.0})
    >>> next(iter(a)) is next(iter(b))
    True
    """
    if isinstance(obj, str):
        return sys.intern(obj)
    if isinstance(obj, OrderedDict):
        out = OrderedDict((canonical(k), canonical(v)) for k, v in obj.items())
        if hasattr(obj, "_metadata"):
            out._metadata = canonical(obj._metadata)
        return out
    if isinstance(obj, dict):
        return {canonical(k): canonical(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(canonical(v) for v in obj)
    return obj


def save_checkpoint(path: Path, payload: dict, fmt: str) -> None:
    """Write a training checkpoint; ``payload`` is built by the trainer (see module docstring). Equal
    payloads give equal bytes (``canonical``), however the process came by them (fresh or resumed)."""
    atomic_torch_save(canonical({"format": fmt, **payload}), path)


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
