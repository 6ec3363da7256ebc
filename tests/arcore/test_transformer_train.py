"""Training the Transformer with the RNN's loop: loss falls, SIGKILL + relaunch is bit-identical, refusals,
and the stage end to end on tiny shards."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from arcore.errors import InputError, StageError
from arcore.rnn.checkpoint import CHECKPOINT_NAME, MODEL_WEIGHTS
from arcore.rnn.config import RNNConfig
from arcore.rnn.train import train_rnn
from arcore.transformer.checkpoint import load_model
from arcore.transformer.config import TransformerConfig
from arcore.transformer.train import train_transformer

ROOT = Path(__file__).resolve().parents[2]
TINY = dict(layers=1, d_model=16, heads=2, context=8, batch_size=4, eval_batch_size=2, lr=1e-2)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _cycle(n, vocab=10):
    """A learnable stream: a fixed random cycle of length 7 over ``vocab`` ids, with 5% noise."""
    rng = np.random.default_rng(1)
    ids = np.tile(rng.integers(0, vocab, size=7), n // 7 + 1)[:n]
    noise = rng.random(n) < 0.05
    ids[noise] = rng.integers(0, vocab, size=noise.sum())
    return ids


def test_training_reduces_the_loss_and_reports_through_the_shared_callbacks(tmp_path):
    epochs, bar = [], []
    cfg = TransformerConfig(**TINY, epochs=3, checkpoint_every=0)
    result = train_transformer(cfg, _cycle(1200), _cycle(300), 10, tmp_path, valid_bytes=600,
                               on_epoch=lambda e, m: epochs.append(dict(m)), progress=lambda d, t: bar.append((d, t)))
    assert bar[-1] == (result.steps, result.steps) == (3 * 38, 3 * 38)  # ceil(299 / 8) windows per epoch
    losses = [m["valid_loss"] for m in epochs]
    assert losses[-1] < losses[0] and losses[-1] < 0.5 * math.log(10)
    assert epochs[0]["train_loss"] > epochs[-1]["train_loss"]
    assert "spectral_norm_whh" not in epochs[0] and result.grad_h_norms == ()  # RNN-only diagnostics
    assert result.train_tokens == 3 * 4 * 299
    model = load_model(result.model_dir, vocab_size=10)
    assert model.cfg == cfg
    out = result.stage_output()
    assert all((tmp_path / name).is_file() for name in out.artifacts)


def test_checkpoints_of_another_family_or_config_are_refused(tmp_path):
    cfg = TransformerConfig(**TINY, epochs=1)
    train_rnn(RNNConfig(emb_size=8, hidden_size=8, batch_size=4, bptt=8, epochs=1, eval_batch_size=2),
              _cycle(400), _cycle(100), 10, tmp_path / "rnn")
    with pytest.raises(StageError, match="not an arpipe transformer checkpoint"):
        train_transformer(cfg, _cycle(400), _cycle(100), 10, tmp_path / "rnn")
    first = train_transformer(cfg, _cycle(400), _cycle(100), 10, tmp_path / "t")
    with pytest.raises(StageError, match="different transformer config \\(d_model differ\\)"):
        train_transformer(cfg.model_copy(update={"d_model": 8}), _cycle(400), _cycle(100), 10, tmp_path / "t")
    longer = train_transformer(cfg.model_copy(update={"epochs": 2}), _cycle(400), _cycle(100), 10, tmp_path / "t")
    assert longer.resumed_from_step == first.steps and longer.steps == 2 * first.steps


def test_bad_inputs_name_the_transformer_settings(tmp_path):
    cfg = TransformerConfig(**{**TINY, "context": 64})
    with pytest.raises(InputError, match="lower transformer.context"):
        train_transformer(cfg, _cycle(200), _cycle(100), 10, tmp_path / "a")
    with pytest.raises(InputError, match="valid split is empty; the transformer stage"):
        train_transformer(cfg, _cycle(200), np.array([], dtype=np.int64), 10, tmp_path / "b")


# -- kill and resume ---------------------------------------------------------------------------------------

RESUME_CONFIG = {"layers": 1, "d_model": 16, "heads": 2, "context": 6, "dropout": 0.2, "batch_size": 4,
                 "epochs": 2, "checkpoint_every": 7, "lr": 0.01, "eval_batch_size": 2}


def _launch(args: list[str], out: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "arcore.neural.launch", "--model", "transformer", *args,
                             "--out", str(out)], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _report(proc: subprocess.Popen) -> dict:
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    return json.loads(out.strip().splitlines()[-1])


def test_sigkill_and_relaunch_ends_bit_identical(tmp_path):
    ids = np.random.default_rng(0).integers(0, 20, size=1500)
    np.save(tmp_path / "train.npy", ids)
    np.save(tmp_path / "valid.npy", ids[:200])
    (tmp_path / "cfg.json").write_text(json.dumps(RESUME_CONFIG))
    args = ["--train", str(tmp_path / "train.npy"), "--valid", str(tmp_path / "valid.npy"), "--vocab-size", "20",
            "--config", str(tmp_path / "cfg.json"), "--threads", "1"]
    straight = _report(_launch(args, tmp_path / "straight"))
    out = tmp_path / "killed"
    victim = _launch([*args, "--step-delay", "0.03"], out)
    deadline = time.monotonic() + 90
    while not (out / CHECKPOINT_NAME).exists():
        if victim.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"run ended before its first checkpoint: {victim.communicate()[1][-500:]}")
        time.sleep(0.01)
    time.sleep(0.15)  # train past the checkpoint: that work is lost and must be redone identically
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=30)
    killed_at = torch.load(out / CHECKPOINT_NAME, weights_only=True)["position"]["step"]
    resumed = _report(_launch(args, out))
    assert 0 < resumed["resumed_from_step"] == killed_at < straight["steps"] == resumed["steps"]
    assert resumed["weights_sha256"] == straight["weights_sha256"]
    assert resumed["best_valid_loss"] == straight["best_valid_loss"]
    a = torch.load(tmp_path / "straight" / "model" / MODEL_WEIGHTS, weights_only=True)
    b = torch.load(out / "model" / MODEL_WEIGHTS, weights_only=True)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# -- the stage ---------------------------------------------------------------------------------------------


def _documents(ingest: Path) -> None:
    rng = np.random.default_rng(0)
    words = "the cat sat on a mat and ran to see his red house by the river".split()
    texts = {split: [" ".join(rng.choice(words, size=rng.integers(3, 30))) for _ in range(n)]
             for split, n in (("train", 150), ("valid", 20), ("test", 20))}
    rows = [(f"{s}-{i}", s, t) for s, ts in texts.items() for i, t in enumerate(ts)]
    ingest.mkdir(parents=True)
    pq.write_table(pa.table({"doc_id": [r[0] for r in rows], "split": [r[1] for r in rows],
                             "text": pa.array([r[2] for r in rows], pa.large_string()),
                             "source": ["test"] * len(rows)}), ingest / "documents.parquet")


def test_stage_writes_model_history_attention_map_and_per_document_figures(tmp_path):
    from arcore.evaluate import split_counts
    from arcore.evaluate import evaluate_model
    from arcore.shards import ShardsConfig, build_shards, read_ids
    from arcore.tokenize import TokenizerConfig, build_tokenizer, load_tokenizer
    from arcore.transformer.stage import ATTENTION_PNG, MODEL_SUBDIR, build_transformer, load_transformer

    _documents(tmp_path / "ingest")
    for d in ("tok", "shards", "out"):
        (tmp_path / d).mkdir()
    build_tokenizer(TokenizerConfig(vocab_size=300), tmp_path / "ingest", tmp_path / "tok")
    build_shards(ShardsConfig(), tmp_path / "ingest", tmp_path / "tok", tmp_path / "shards")
    cfg = TransformerConfig(layers=1, d_model=16, heads=2, context=16, batch_size=4, eval_batch_size=4, epochs=1)
    out = build_transformer(cfg, tmp_path / "tok", tmp_path / "shards", tmp_path / "out")
    expected = {f"{MODEL_SUBDIR}/model.pt", f"{MODEL_SUBDIR}/config.json", "history.json", ATTENTION_PNG}
    assert expected <= set(out.artifacts)
    assert all((tmp_path / "out" / a).is_file() for a in out.artifacts)
    assert len(json.loads((tmp_path / "out" / "history.json").read_text())) == 1
    tok = load_tokenizer(tmp_path / "tok")
    lm = load_transformer(tmp_path / "out", tok)
    valid = read_ids(tmp_path / "shards", "valid")
    again = evaluate_model(lm, valid, split_counts(tmp_path / "shards", "valid"), tok.unk_id)
    assert out.metrics["valid_bits_per_byte"] == pytest.approx(again.bits_per_byte, rel=1e-9)
    assert 0 < out.metrics["valid_bits_per_byte"] < math.log2(300) * 2


def test_two_gloo_processes_train_it_and_ranks_agree(tmp_path):
    """DDP comes from the shared loop: ``torchrun ... arcore.neural.launch --model transformer``."""
    ids = np.tile(np.arange(2, 12), 120)
    np.save(tmp_path / "train.npy", ids)
    np.save(tmp_path / "valid.npy", ids[:200])
    cfg = {"layers": 1, "d_model": 16, "heads": 2, "context": 8, "batch_size": 4, "epochs": 1, "lr": 0.01,
           "eval_batch_size": 2, "checkpoint_every": 0}
    (tmp_path / "cfg.json").write_text(json.dumps(cfg))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "arcore.neural.launch", "--model", "transformer", "--train", str(tmp_path / "train.npy"),
           "--valid", str(tmp_path / "valid.npy"), "--vocab-size", "12", "--config", str(tmp_path / "cfg.json"),
           "--out", str(tmp_path / "out"), "--threads", "1"]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout[-1000:] + proc.stderr[-3000:]
    reports = sorted((json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")),
                     key=lambda r: r["rank"])
    assert [r["rank"] for r in reports] == [0, 1]
    assert reports[0]["weights_sha256"] == reports[1]["weights_sha256"]
    # 1200 tokens in 2 x 4 streams of 150 rows -> ceil(149 / 8) = 19 steps, each of 2 x 4 x 8 tokens max
    assert reports[0]["steps"] == 19 and reports[0]["train_tokens"] == 2 * 149 * 4
    assert reports[0]["best_valid_loss"] < math.log(12)


def test_too_little_text_names_the_transformer_setting(tmp_path):
    from arcore.transformer.train import train_transformer

    cfg = TransformerConfig(layers=1, d_model=16, heads=2, context=8, batch_size=4, eval_batch_size=64)
    ids = np.arange(200) % 10
    with pytest.raises(InputError, match="too few.*lower transformer.eval_batch_size"):
        train_transformer(cfg, ids, ids[:50], 10, tmp_path)
