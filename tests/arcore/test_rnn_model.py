"""Config validation, model shapes, the batchify layout, save/load round trips and bad-input errors."""

from __future__ import annotations

import json
from fractions import Fraction

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from arcore.errors import InputError, StageError
from arcore.neural.data import batchify, get_window, n_windows
from arcore.rnn.checkpoint import MODEL_CONFIG, MODEL_WEIGHTS, load_checkpoint, load_model, save_checkpoint, save_model
from arcore.rnn.config import RNNConfig
from arcore.rnn.model import RNNModel, detach_hidden, next_token_loss
from arcore.rnn.train import train_rnn

TINY = dict(emb_size=8, hidden_size=8, batch_size=2, bptt=4, epochs=1, eval_batch_size=2)


def test_config_refuses_bad_values_naming_the_key():
    with pytest.raises(ValidationError, match="cell"):
        RNNConfig(cell="transformer")
    with pytest.raises(ValidationError, match="bptt"):
        RNNConfig(bptt=0)
    with pytest.raises(ValidationError, match="tie_weights"):
        RNNConfig(emb_size=8, hidden_size=16, tie_weights=True)
    with pytest.raises(ValidationError, match="extra"):
        RNNConfig(hiden_size=3)
    assert RNNConfig(emb_size=8, hidden_size=16, tie_weights=False).hidden_size == 16


@pytest.mark.parametrize("cell", ["rnn_tanh", "rnn_relu", "gru", "lstm"])
def test_every_cell_maps_ids_to_next_token_logits(cell):
    model = RNNModel(RNNConfig(cell=cell, layers=2, dropout=0.1, **TINY), vocab_size=11)
    hidden = model.init_hidden(3)
    logits, hidden = model(torch.zeros(5, 3, dtype=torch.long), hidden)
    assert logits.shape == (5, 3, 11)
    h = hidden[0] if cell == "lstm" else hidden
    assert h.shape == (2, 3, 8)
    assert not detach_hidden(hidden)[0].requires_grad if cell == "lstm" else not detach_hidden(hidden).requires_grad


def test_weight_tying_shares_one_matrix():
    tied = RNNModel(RNNConfig(tie_weights=True, **TINY), vocab_size=7)
    untied = RNNModel(RNNConfig(tie_weights=False, **TINY), vocab_size=7)
    assert tied.decoder.weight is tied.encoder.weight
    n = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert n(untied) - n(tied) == 7 * 8


def test_uniform_model_loss_is_log_vocab():
    logits = torch.zeros(4, 2, 50)
    assert next_token_loss(logits, torch.zeros(4, 2, dtype=torch.long)).item() == pytest.approx(np.log(50))


def test_batchify_worked_example_and_windows():
    data = batchify(np.arange(10), 2)
    assert data.tolist() == [[0, 5], [1, 6], [2, 7], [3, 8], [4, 9]]
    assert n_windows(data, 2) == 2
    x, y = get_window(data, 1, 2)
    assert x.tolist() == [[2, 7], [3, 8]] and y.tolist() == [[3, 8], [4, 9]]
    # DDP: rank 1 of 2 gets the second half of the 4 streams
    rank1 = batchify(np.arange(20), 2, rank=1, world_size=2)
    assert rank1.tolist() == [[10, 15], [11, 16], [12, 17], [13, 18], [14, 19]]
    # the last window is shorter; every target row appears exactly once
    data = batchify(np.arange(22), 2)
    rows = [get_window(data, w, 4)[1] for w in range(n_windows(data, 4))]
    assert torch.cat(rows)[:, 0].tolist() == list(range(1, 11))


def test_save_load_round_trip_gives_same_outputs(tmp_path):
    model = RNNModel(RNNConfig(cell="gru", **TINY), vocab_size=9).eval()
    save_model(tmp_path / "m", model)
    assert json.loads((tmp_path / "m" / MODEL_CONFIG).read_text())["vocab_size"] == 9
    loaded = load_model(tmp_path / "m", vocab_size=9)
    x = torch.randint(0, 9, (6, 2))
    assert torch.equal(model(x, model.init_hidden(2))[0], loaded(x, loaded.init_hidden(2))[0])
    assert loaded.decoder.weight is loaded.encoder.weight  # tying survives the round trip
    with pytest.raises(StageError, match="vocabulary of 9 tokens"):
        load_model(tmp_path / "m", vocab_size=10)


def test_corrupted_files_give_one_line_errors(tmp_path):
    model = RNNModel(RNNConfig(**TINY), vocab_size=9)
    save_model(tmp_path / "m", model)
    weights = tmp_path / "m" / MODEL_WEIGHTS
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(StageError, match="corrupt"):
        load_model(tmp_path / "m")
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint at all")
    with pytest.raises(StageError, match="corrupt"):
        load_checkpoint(tmp_path / "bad.pt", RNNConfig(**TINY), 9)


def test_pickled_objects_are_refused(tmp_path):
    # Any object other than tensors, numbers, strings and containers needs pickle to rebuild it (and a
    # hostile file could name os.system instead of Fraction): weights_only loading refuses it.
    torch.save({"format": "arpipe-rnn-checkpoint-v1", "x": Fraction(1, 3)}, tmp_path / "evil.pt")
    with pytest.raises(StageError, match="corrupt or not an arpipe file"):
        load_checkpoint(tmp_path / "evil.pt", RNNConfig(**TINY), 9)


def _ids(n=400, vocab=10):
    return np.random.default_rng(0).integers(0, vocab, size=n)


def test_resuming_with_other_vocabulary_or_config_is_refused(tmp_path):
    cfg = RNNConfig(**TINY)
    first = train_rnn(cfg, _ids(), _ids(100), 10, tmp_path)
    with pytest.raises(StageError, match="vocabulary of 10 tokens but the shards use 12"):
        train_rnn(cfg, _ids(), _ids(100), 12, tmp_path)
    with pytest.raises(StageError, match="hidden_size"):
        train_rnn(RNNConfig(**{**TINY, "emb_size": 6, "hidden_size": 6}), _ids(), _ids(100), 10, tmp_path)
    with pytest.raises(StageError, match="other token ids"):
        train_rnn(cfg, _ids()[::-1], _ids(100), 10, tmp_path)
    # more epochs is a legitimate continuation
    longer = train_rnn(cfg.model_copy(update={"epochs": 2}), _ids(), _ids(100), 10, tmp_path)
    assert longer.resumed_from_step == first.steps and longer.steps == 2 * first.steps


def test_bad_inputs_are_refused_with_actionable_messages(tmp_path):
    cfg = RNNConfig(**TINY)
    with pytest.raises(InputError, match="valid split is empty"):
        train_rnn(cfg, _ids(), np.array([], dtype=np.int64), 10, tmp_path / "a")
    with pytest.raises(InputError, match="shorter than one BPTT window"):
        train_rnn(cfg.model_copy(update={"bptt": 50}), _ids(60), _ids(100), 10, tmp_path / "b")
    with pytest.raises(InputError, match="too few.*lower rnn.batch_size"):
        train_rnn(cfg, _ids(3), _ids(100), 10, tmp_path / "c")
    with pytest.raises(InputError, match="vocabulary has 5 tokens"):
        train_rnn(cfg, _ids(), _ids(100), 5, tmp_path / "d")


def test_checkpoint_round_trip_keeps_tensors_and_numbers(tmp_path):
    cfg = RNNConfig(**TINY)
    save_checkpoint(tmp_path / "c.pt", {"config": cfg.model_dump_json(), "vocab_size": 9, "x": torch.arange(3)})
    back = load_checkpoint(tmp_path / "c.pt", cfg, 9)
    assert torch.equal(back["x"], torch.arange(3))


def test_training_over_a_corrupted_checkpoint_says_so(tmp_path):
    (tmp_path / "checkpoint.pt").write_bytes(b"PK\x03\x04 truncated zip")
    with pytest.raises(StageError, match="checkpoint .* is corrupt.*delete it"):
        train_rnn(RNNConfig(**TINY), _ids(), _ids(100), 10, tmp_path)
