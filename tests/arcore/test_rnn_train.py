"""Training: the same weights as a bare word_language_model loop, callbacks, annealing, best model kept."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from arcore.neural.data import batchify, get_window
from arcore.rnn.checkpoint import load_model
from arcore.rnn.config import RNNConfig
from arcore.neural.distributed import DistContext
from arcore.rnn.model import RNNModel
from arcore.neural.train import evaluate
from arcore.rnn.train import train_rnn


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _cycle(n, vocab=10):
    """A learnable stream: a fixed random cycle of length 7 over ``vocab`` ids, with 5% noise."""
    rng = np.random.default_rng(1)
    ids = np.tile(rng.integers(0, vocab, size=7), n // 7 + 1)[:n]
    noise = rng.random(n) < 0.05
    ids[noise] = rng.integers(0, vocab, size=noise.sum())
    return ids


def bare_word_language_model(cfg: RNNConfig, train_ids, valid_ids, vocab):
    """PyTorch examples' word_language_model main.py loop, transcribed (SGD by hand, /4 on plateau)."""
    torch.manual_seed(cfg.seed)
    model = RNNModel(cfg, vocab)
    train_data, val_data = batchify(train_ids, cfg.batch_size), batchify(valid_ids, cfg.eval_batch_size)
    lr, best_val, losses = cfg.lr, None, []
    for _ in range(cfg.epochs):
        model.train()
        hidden = model.init_hidden(cfg.batch_size)
        for batch, i in enumerate(range(0, train_data.size(0) - 1, cfg.bptt)):
            data, targets = get_window(train_data, batch, cfg.bptt)
            model.zero_grad()
            hidden = tuple(h.detach() for h in hidden) if isinstance(hidden, tuple) else hidden.detach()
            output, hidden = model(data, hidden)
            loss = torch.nn.functional.cross_entropy(output.view(-1, vocab), targets.reshape(-1))
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip)
            for p in model.parameters():
                p.data.add_(p.grad, alpha=-lr)
        val_loss = evaluate(model, val_data, cfg.bptt, DistContext(), amp=False)
        losses.append(val_loss)
        if best_val is None or val_loss < best_val:
            best_val = val_loss
        else:
            lr /= 4.0
    return model, losses


@pytest.mark.parametrize("cell", ["lstm", "rnn_tanh"])
def test_same_weights_as_the_bare_pytorch_loop(tmp_path, cell):
    cfg = RNNConfig(cell=cell, emb_size=16, hidden_size=16, batch_size=4, bptt=10, lr=5.0, clip=0.25,
                    epochs=3, optimizer="sgd", dropout=0.0, eval_batch_size=2, checkpoint_every=0)
    train_ids, valid_ids = _cycle(1200), _cycle(300)
    result = train_rnn(cfg, train_ids, valid_ids, 10, tmp_path)
    bare, bare_losses = bare_word_language_model(cfg, train_ids, valid_ids, 10)
    # Bit for bit: the pipeline's loop adds resumability and callbacks, not a different computation.
    assert [h["valid_loss"] for h in result.history] == bare_losses
    final = torch.load(tmp_path / "checkpoint.pt", weights_only=True)["model"]
    for name, tensor in bare.state_dict().items():
        assert torch.equal(final[name], tensor), name


def test_callbacks_report_progress_and_loss_falls(tmp_path):
    steps, epochs, bar = [], [], []
    cfg = RNNConfig(cell="gru", emb_size=16, hidden_size=16, batch_size=4, bptt=10, epochs=3, lr=0.02,
                    eval_batch_size=2)
    result = train_rnn(cfg, _cycle(1200), _cycle(300), 10, tmp_path, valid_bytes=600,
                       on_step=lambda s, m: steps.append((s, dict(m))),
                       on_epoch=lambda e, m: epochs.append((e, dict(m))),
                       progress=lambda done, total: bar.append((done, total)))
    assert bar[-1] == (result.steps, result.steps) == (90, 90)  # 3 epochs x ceil(299 / 10) windows
    out = result.stage_output()
    assert out.records["steps"] == 90 and all((tmp_path / name).is_file() for name in out.artifacts)
    assert len(result.grad_h_norms) == 10
    assert [s for s, _ in steps] == list(range(1, result.steps + 1))
    assert {"loss", "lr", "tokens_per_s"} <= steps[0][1].keys()
    assert [e for e, _ in epochs] == [0, 1, 2]
    m = epochs[-1][1]
    assert {"train_loss", "valid_loss", "valid_ppl", "valid_bpb", "lr", "tokens_per_s", "spectral_norm_whh",
            "grad_h_decay"} <= m.keys()
    assert m["valid_ppl"] == pytest.approx(math.exp(m["valid_loss"]))
    assert m["valid_bpb"] == pytest.approx(m["valid_loss"] * 300 / (math.log(2) * 600))
    assert epochs[-1][1]["valid_loss"] < epochs[0][1]["valid_loss"] < 0.5 * math.log(10)
    assert result.train_tokens == 3 * 4 * 299  # every row of the 4 streams but the first is a target once


def test_plateau_annealing_divides_lr_and_best_model_is_kept(tmp_path):
    # Random ids cannot be learned: valid loss soon stops improving, which must trigger lr /= 4.
    rng = np.random.default_rng(0)
    train_ids, valid_ids = rng.integers(0, 10, 1200), rng.integers(0, 10, 300)
    cfg = RNNConfig(emb_size=16, hidden_size=16, batch_size=4, bptt=10, epochs=6, lr=1.0, optimizer="sgd",
                    eval_batch_size=2)
    result = train_rnn(cfg, train_ids, valid_ids, 10, tmp_path)
    lrs = [cfg.lr] + [h["lr"] for h in result.history]
    for prev, h, lr in zip(lrs, result.history, lrs[1:]):
        assert lr == (prev if h["improved"] else prev / 4)
    assert any(not h["improved"] for h in result.history)
    best = min(h["valid_loss"] for h in result.history)
    assert result.best_valid_loss == best
    assert result.history[result.best_epoch]["valid_loss"] == best
    model = load_model(result.model_dir, vocab_size=10)  # the best epoch's weights, not the last
    again = evaluate(model, batchify(valid_ids, cfg.eval_batch_size), cfg.bptt, DistContext(), amp=False)
    assert again == pytest.approx(best, rel=1e-6)


def test_equal_training_writes_equal_bytes(tmp_path):
    """The stage's output digest covers its files: two equal trainings must write identical files
    (wall-clock figures stay out of the checkpoint and history; they go to metrics and callbacks)."""
    ids = _cycle(1200)
    cfg = RNNConfig(emb_size=16, hidden_size=16, batch_size=4, bptt=10, epochs=2, eval_batch_size=2)
    first, second = (train_rnn(cfg, ids, ids[:300], 10, tmp_path / name) for name in ("a", "b"))
    assert first.tokens_per_s > 0 and all("tokens_per_s" not in h for h in first.history)
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    assert files and files == sorted(p.relative_to(tmp_path / "b") for p in (tmp_path / "b").rglob("*") if p.is_file())
    for name in files:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
