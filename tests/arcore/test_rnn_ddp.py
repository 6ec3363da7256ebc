"""Data parallel training with torch DDP: 2 CPU processes (gloo) launched by torchrun train, and agree.

``python -m torch.distributed.run --nproc_per_node 2 -m arcore.neural.launch`` is the command the
``arcore.rnn.distributed`` docstring documents; each rank prints its final-weights digest.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

from arcore.rnn.checkpoint import CHECKPOINT_NAME

ROOT = Path(__file__).resolve().parents[2]


def test_two_gloo_processes_train_and_ranks_agree(tmp_path):
    ids = np.tile(np.arange(2, 12), 240)  # a learnable cycle: the loss must fall well below ln(12)
    np.save(tmp_path / "train.npy", ids)
    np.save(tmp_path / "valid.npy", ids[:400])
    cfg = {"cell": "gru", "emb_size": 12, "hidden_size": 12, "batch_size": 4, "bptt": 8, "epochs": 2,
           "lr": 0.02, "eval_batch_size": 2, "checkpoint_every": 0}
    (tmp_path / "cfg.json").write_text(json.dumps(cfg))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    # --standalone: torchrun picks a free rendezvous port itself (no race with other processes on the host)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "arcore.neural.launch", "--train", str(tmp_path / "train.npy"),
           "--valid", str(tmp_path / "valid.npy"), "--vocab-size", "12", "--config", str(tmp_path / "cfg.json"),
           "--out", str(tmp_path / "out"), "--threads", "1"]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout[-1000:] + proc.stderr[-3000:]
    reports = sorted((json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")),
                     key=lambda r: r["rank"])
    assert [r["rank"] for r in reports] == [0, 1]
    assert reports[0]["weights_sha256"] == reports[1]["weights_sha256"]  # DDP kept the replicas identical
    assert reports[0]["best_valid_loss"] == reports[1]["best_valid_loss"]  # valid loss all-reduced
    assert reports[0]["best_valid_loss"] < 0.5 * np.log(12)
    # 2400 tokens in 2 x 4 streams of 300 rows -> ceil(299 / 8) = 38 steps per epoch, each of 2 x 32 tokens
    assert reports[0]["steps"] == 2 * 38
    assert reports[0]["train_tokens"] == 2 * 2 * 299 * 4
    ckpt = torch.load(tmp_path / "out" / CHECKPOINT_NAME, map_location="cpu", weights_only=True)
    assert ckpt["world_size"] == 2 and len(ckpt["hidden"]) == 2 and len(ckpt["rng"]) == 2
