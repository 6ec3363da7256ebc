"""A training stage SIGKILLed at any point and relaunched writes the bytes an uninterrupted run writes.

Issue 17: the rnn stage's ``checkpoint.pt`` held Python's global ``random`` state, which other code in the
process advances, so two runs of one config never had the same output digest. Here every run (clean,
killed, relaunched) is its own process whose ``random`` and numpy global generators are seeded from the
OS first, as foreign code would leave them; and each killed run dies by a real SIGKILL at one exact point
of the stage, injected by wrapping one library function in the child process (no hook in the library):

- ``mid_epoch``: after an optimizer step that is not a checkpoint step (the work since is lost);
- ``after_checkpoint``: right after a mid-epoch ``checkpoint.pt`` is written;
- ``during_best_copy``: between the best epoch's ``model.pt`` and its ``config.json``;
- ``during_epoch_eval``: at the start of the second epoch's valid pass;
- ``after_training``: training finished and checkpointed, killed while the stage scores the valid split
  (the relaunch trains nothing and must still write the gradient-norm plot).

The relaunch must leave every file of the output (``.data`` aside, which the stage contract excludes)
byte-identical to the clean run's, for the RNN and the Transformer; dropout is on so the torch RNG state
matters, and training spans two epochs so annealing and best-epoch selection do too.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
KILL_POINTS = ("mid_epoch", "after_checkpoint", "during_best_copy", "during_epoch_eval", "after_training")
CONFIGS = {
    "rnn": {"cell": "lstm", "emb_size": 16, "hidden_size": 16, "dropout": 0.2, "batch_size": 4, "bptt": 8,
            "epochs": 2, "checkpoint_every": 5, "eval_batch_size": 4, "lr": 0.01},
    "transformer": {"layers": 1, "d_model": 16, "heads": 2, "context": 8, "dropout": 0.2, "batch_size": 4,
                    "eval_batch_size": 4, "epochs": 2, "checkpoint_every": 5, "lr": 0.01},
}


def _kill() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def _arm(family: str, point: str) -> None:
    """Wrap the library function at ``point`` so this process SIGKILLs itself there (see module docstring)."""
    import arcore.neural.checkpoint as shared
    import arcore.neural.train as train

    if point == "mid_epoch":
        return  # done through on_step in _drive
    if point == "after_checkpoint":
        save = shared.save_checkpoint

        def save_then_die(path, payload, fmt):
            save(path, payload, fmt)
            if payload["position"]["window"] != 0:  # a mid-epoch checkpoint
                _kill()
        shared.save_checkpoint = save_then_die
    elif point == "during_best_copy":
        module = __import__(f"arcore.{family}.checkpoint", fromlist=["atomic_write_text"])
        write, calls = module.atomic_write_text, []

        def write_or_die(text, path):
            calls.append(path)
            if len(calls) == 2:  # the second best model: model.pt is new, config.json not yet written
                _kill()
            write(text, path)
        module.atomic_write_text = write_or_die
    elif point == "during_epoch_eval":
        evaluate, calls = train.evaluate, []

        def evaluate_or_die(*args, **kwargs):
            calls.append(1)
            if len(calls) == 2:
                _kill()
            return evaluate(*args, **kwargs)
        train.evaluate = evaluate_or_die
    elif point == "after_training":
        stage = __import__(f"arcore.{family}.stage", fromlist=["score_valid"])
        stage.score_valid = lambda *args, **kwargs: _kill()


def _drive(family: str, point: str, tok: Path, shards: Path, out: Path) -> None:
    """The child process: foreign RNG use, the armed kill point, then the stage itself."""
    import random

    import numpy as np
    import torch

    random.seed()  # what other code in a pipeline process leaves behind: different in every process
    np.random.seed()
    torch.set_num_threads(1)
    _arm(family, point)
    if family == "rnn":
        from arcore.rnn.config import RNNConfig as Config
        from arcore.rnn.stage import build_rnn as build
    else:
        from arcore.transformer.config import TransformerConfig as Config
        from arcore.transformer.stage import build_transformer as build
    on_step = (lambda step, m: _kill() if step == 7 else None) if point == "mid_epoch" else None
    result = build(Config(**CONFIGS[family]), tok, shards, out, on_step=on_step)
    print(json.dumps({k: v for k, v in result.metrics.items() if "seconds" not in k and "per_s" not in k}))


def _run(family: str, point: str, data: tuple[Path, Path], out: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "tests.arcore.test_neural_resume_identity", family, point, *map(str, data), str(out)]
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def _files(out: Path) -> dict[str, bytes]:
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*"))
            if p.is_file() and not any(part.startswith(".") for part in p.relative_to(out).parts)}


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> tuple[Path, Path]:
    from arcore.shards import ShardsConfig, build_shards
    from arcore.tokenize import TokenizerConfig, build_tokenizer
    from tests.arcore.test_transformer_train import _documents

    root = tmp_path_factory.mktemp("resume-data")
    _documents(root / "ingest")
    for d in ("tok", "shards"):
        (root / d).mkdir()
    build_tokenizer(TokenizerConfig(vocab_size=300), root / "ingest", root / "tok")
    build_shards(ShardsConfig(), root / "ingest", root / "tok", root / "shards")
    return root / "tok", root / "shards"


@pytest.fixture(scope="module")
def clean(data, tmp_path_factory) -> dict[str, tuple[dict, dict[str, bytes]]]:
    """Two uninterrupted runs per family, each in its own process: they must already agree byte for byte."""
    runs = {}
    for family in CONFIGS:
        outs = []
        for i in range(2):
            out = tmp_path_factory.mktemp(f"clean-{family}-{i}")
            p = _run(family, "none", data, out)
            assert p.returncode == 0, p.stderr[-3000:]
            outs.append((json.loads(p.stdout.strip().splitlines()[-1]), _files(out)))
        assert outs[0][1].keys() == outs[1][1].keys()
        assert [n for n in outs[0][1] if outs[0][1][n] != outs[1][1][n]] == []
        runs[family] = outs[0]
    return runs


@pytest.mark.parametrize("point", KILL_POINTS)
@pytest.mark.parametrize("family", list(CONFIGS))
def test_sigkill_at_any_point_then_relaunch_writes_the_uninterrupted_bytes(family, point, data, clean, tmp_path):
    out = tmp_path / "out"
    killed = _run(family, point, data, out)
    assert killed.returncode == -signal.SIGKILL, f"the kill point was never reached: {killed.stderr[-2000:]}"
    assert (out / "checkpoint.pt").is_file() or point == "mid_epoch"
    resumed = _run(family, "none", data, out)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    metrics, files = clean[family]
    got = _files(out)
    assert got.keys() == files.keys()
    assert [name for name in files if got[name] != files[name]] == []
    assert json.loads(resumed.stdout.strip().splitlines()[-1]) == metrics


if __name__ == "__main__":
    _family, _point, _tok, _shards, _out = sys.argv[1:]
    _drive(_family, _point, Path(_tok), Path(_shards), Path(_out))
