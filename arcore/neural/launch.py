"""Command-line entry point for training from ``.npy`` id files, single-process or under ``torchrun``.

Input: ``--train``/``--valid`` flat int id arrays saved with ``numpy.save``, ``--vocab-size``, an optional
``--config`` JSON file holding an ``RNNConfig`` (its fields, e.g. ``{"cell": "gru", "epochs": 2}``), or with
``--model transformer`` a ``TransformerConfig`` (``arcore.transformer``, trained by the same loop). The id
files are memory-mapped (``np.load(mmap_mode="r")``), as the stages read theirs.
Output: ``train_rnn``'s files in ``--out`` and on stdout, printed by rank 0, one JSON line per rank with
``TrainResult.metrics()``, the rank and the digest of its final weights (ranks must agree).
Relaunching the same command resumes from ``--out/checkpoint.pt``.

    python -m arcore.neural.launch --train t.npy --valid v.npy --vocab-size 4096 --out runs/rnn
    python -m torch.distributed.run --standalone --nproc_per_node 2 -m arcore.neural.launch ...  # DDP

``--step-delay`` sleeps that many seconds after every step (only used by the kill-and-resume test, to
leave time to kill a run between checkpoints).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from arcore.errors import ArpipeError
from arcore.neural.distributed import gather_objects, init_from_env


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m arcore.neural.launch", description=__doc__.split("\n")[0])
    parser.add_argument("--train", type=Path, required=True)
    parser.add_argument("--valid", type=Path, required=True)
    parser.add_argument("--vocab-size", type=int, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--config", type=Path, default=None)
    parser.add_argument("--model", choices=("rnn", "transformer"), default="rnn")
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    parser.add_argument("--step-delay", type=float, default=0.0)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        if args.model == "transformer":
            from arcore.transformer.config import TransformerConfig as config_class
            from arcore.transformer.train import train_transformer as train
        else:
            from arcore.rnn.config import RNNConfig as config_class
            from arcore.rnn.train import train_rnn as train
        cfg = config_class.model_validate_json(args.config.read_text()) if args.config else config_class()
        ctx = init_from_env()
        on_step = (lambda step, m: time.sleep(args.step_delay)) if args.step_delay > 0 else None
        train_ids, valid_ids = np.load(args.train, mmap_mode="r"), np.load(args.valid, mmap_mode="r")
        result = train(cfg, train_ids, valid_ids, args.vocab_size, args.out, on_step=on_step)
    except ArpipeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    report = {**result.metrics(), "resumed_from_step": result.resumed_from_step, "rank": ctx.rank,
              "weights_sha256": result.weights_sha256}
    for line in gather_objects(report, ctx):  # rank 0 prints every rank's line: no interleaving
        if ctx.is_main:
            print(json.dumps(line), flush=True)
    if ctx.active:
        # All ranks leave together: a rank tearing gloo down while another still talks to it aborts
        # ("terminate called without an active exception").
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
