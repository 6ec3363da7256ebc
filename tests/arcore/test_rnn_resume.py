"""Kill a training run with SIGKILL, relaunch it, and get the weights of an uninterrupted run, bit for bit.

Runs ``python -m arcore.neural.launch`` in subprocesses (1 torch thread each, CPU). Dropout is on so the
restored RNG state matters, and the kill lands mid-epoch so the carried hidden state and the data
position matter too.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from arcore.rnn.checkpoint import CHECKPOINT_NAME, MODEL_WEIGHTS

ROOT = Path(__file__).resolve().parents[2]
CONFIG = {"cell": "lstm", "emb_size": 12, "hidden_size": 12, "dropout": 0.2, "batch_size": 4, "bptt": 6,
          "epochs": 2, "checkpoint_every": 7, "optimizer": "adamw", "lr": 0.01, "eval_batch_size": 2}


def _inputs(tmp_path: Path) -> list[str]:
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 20, size=1500)
    np.save(tmp_path / "train.npy", ids)
    np.save(tmp_path / "valid.npy", ids[:200])
    (tmp_path / "cfg.json").write_text(json.dumps(CONFIG))
    return ["--train", str(tmp_path / "train.npy"), "--valid", str(tmp_path / "valid.npy"),
            "--vocab-size", "20", "--config", str(tmp_path / "cfg.json"), "--threads", "1"]


def _launch(args: list[str], out: Path, **popen) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "arcore.neural.launch", *args, "--out", str(out)],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)


def _report(proc: subprocess.Popen) -> dict:
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    return json.loads(out.strip().splitlines()[-1])


def _load(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def test_sigkill_and_relaunch_ends_bit_identical(tmp_path):
    args = _inputs(tmp_path)
    straight = _report(_launch(args, tmp_path / "straight"))
    assert straight["resumed_from_step"] == 0

    out = tmp_path / "killed"
    victim = _launch([*args, "--step-delay", "0.03"], out)
    deadline = time.monotonic() + 90
    while not (out / CHECKPOINT_NAME).exists():
        if victim.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"run ended before its first checkpoint: {victim.communicate()[1][-500:]}")
        time.sleep(0.01)
    time.sleep(0.15)  # let it train past the checkpoint: that work is lost and must be redone identically
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=30)
    assert victim.returncode == -signal.SIGKILL
    killed_at = _load(out / CHECKPOINT_NAME)["position"]["step"]

    resumed = _report(_launch(args, out))
    assert 0 < resumed["resumed_from_step"] == killed_at < straight["steps"]
    assert resumed["steps"] == straight["steps"]
    assert resumed["weights_sha256"] == straight["weights_sha256"]
    for name in (CHECKPOINT_NAME, f"model/{MODEL_WEIGHTS}"):
        a = _load(tmp_path / "straight" / name)
        b = _load(out / name)
        a, b = (a["model"], b["model"]) if name == CHECKPOINT_NAME else (a, b)
        assert a.keys() == b.keys()
        assert all(torch.equal(a[k], b[k]) for k in a), name
    assert resumed["best_valid_loss"] == straight["best_valid_loss"]


def test_checkpoint_holds_everything_and_loads_without_pickle(tmp_path):
    args = _inputs(tmp_path)
    _report(_launch(args, tmp_path / "run"))
    ckpt = _load(tmp_path / "run" / CHECKPOINT_NAME)  # weights_only=True: no arbitrary objects inside
    assert {"model", "optimizer", "schedule", "position", "rng", "hidden", "config", "vocab_size"} <= ckpt.keys()
    assert set(ckpt["rng"][0]) == {"torch", "cuda"}  # only the generators training draws from (issue 17)
    assert ckpt["position"]["epoch"] == CONFIG["epochs"] and ckpt["position"]["window"] == 0
    assert len(ckpt["history"]) == CONFIG["epochs"]
    assert not list((tmp_path / "run").glob(".*.tmp-*"))  # atomic writes leave no temporaries


def test_relaunching_a_finished_run_does_no_more_work(tmp_path):
    args = _inputs(tmp_path)
    first = _report(_launch(args, tmp_path / "run"))
    again = _report(_launch(args, tmp_path / "run"))
    assert again["resumed_from_step"] == first["steps"] == again["steps"]
    assert again["weights_sha256"] == first["weights_sha256"]
