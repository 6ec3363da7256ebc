"""The binary-addition toy: trained on 8-bit numbers, the Elman RNN adds 64-bit numbers exactly."""

from __future__ import annotations

import numpy as np
import pytest

from arcore.rnn.toy_addition import AdditionConfig, ElmanAdder, addition_batch, bits_to_int, run_binary_addition


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_batches_hold_true_sums_least_significant_bit_first():
    x, y = addition_batch(50, 64, np.random.default_rng(0))
    assert x.shape == (65, 50, 2) and y.shape == (65, 50)
    for j in range(50):
        a, b = bits_to_int(x[:, j, 0].int().tolist()), bits_to_int(x[:, j, 1].int().tolist())
        assert bits_to_int(y[:, j].int().tolist()) == a + b
    assert bits_to_int([0, 1, 1, 0]) == 6


def test_lecture_shapes():
    rnn = ElmanAdder()
    assert [tuple(p.shape) for p in (rnn.w_xh, rnn.w_hh, rnn.w_hy)] == [(2, 16), (16, 16), (16, 1)]


@pytest.mark.parametrize("seed", [0, 1])
def test_trained_on_8_bits_adds_64_bit_numbers(seed):
    result = run_binary_addition(AdditionConfig(seed=seed, steps=800, eval_samples=500))
    assert set(result.rnn_accuracy) == {8, 16, 32, 64}
    assert result.rnn_accuracy[64] >= 0.99
    assert min(result.rnn_accuracy.values()) >= 0.99
    assert set(result.ff_accuracy) == {8}  # the feed-forward net has no inputs for a 16-bit number
    assert result.rnn_params == 2 * 16 + 16 * 16 + 16 + 16 + 1


def test_untrained_network_does_not_add():
    result = run_binary_addition(AdditionConfig(steps=1, eval_samples=200))
    assert result.rnn_accuracy[64] < 0.05
