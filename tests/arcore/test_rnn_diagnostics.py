"""Vanishing gradients made visible: ||dL/dh_t|| per time step, Elman tanh against the LSTM.

The setting, and why it separates the two cells: one window of 40 random tokens, the loss of the last
prediction only, so ``dL/dh_t`` is the product of ``40 - 1 - t`` step Jacobians.
- Elman tanh, PyTorch's default initialisation U(-1/sqrt(H), 1/sqrt(H)): W_hh's eigenvalues lie in a disc
  of radius about 1/sqrt(3) ~ 0.58 and |tanh'| <= 1, so each step shrinks the gradient by roughly that
  factor: after 39 steps the norm has fallen by many orders of magnitude (measured ~1e-9..1e-11).
- LSTM with its forget gates open (bias +3, f = sigmoid(3) ~ 0.95), the regime an LSTM reaches when a task
  needs memory, and what "chrono" / forget-bias initialisations start from: the cell state carries the
  gradient with a factor ~0.95 per step, ~0.13 after 39 steps (measured 0.06..0.11).
At default initialisation (f ~ 0.5) the LSTM decays almost as fast as the Elman net: the gating helps
only once the forget gate is open, which the last assertion records too.
"""

from __future__ import annotations

import numpy as np
import torch

from arcore.rnn.config import RNNConfig
from arcore.rnn.diagnostics import gradient_decay, hidden_gradient_norms, plot_gradient_norms, recurrent_spectral_norm
from arcore.rnn.model import RNNModel

H, T, V = 32, 40, 50


def _window(seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, V, (T, 8), generator=g), torch.randint(0, V, (T, 8), generator=g)


def _model(cell, seed, forget_bias=None):
    torch.manual_seed(seed)
    model = RNNModel(RNNConfig(cell=cell, emb_size=H, hidden_size=H), V)
    if forget_bias is not None:  # nn.LSTM gate order: input, forget, cell, output
        with torch.no_grad():
            model.rnn.bias_ih_l0[H : 2 * H].fill_(0.0)
            model.rnn.bias_hh_l0[H : 2 * H].fill_(forget_bias)
    return model


def test_elman_gradients_vanish_where_an_open_lstm_keeps_them():
    for seed in range(3):
        x, y = _window(seed)
        elman = hidden_gradient_norms(_model("rnn_tanh", seed), x, y)
        lstm = hidden_gradient_norms(_model("lstm", seed, forget_bias=3.0), x, y)
        closed = hidden_gradient_norms(_model("lstm", seed, forget_bias=0.0), x, y)
        assert elman.shape == lstm.shape == (T,)
        assert gradient_decay(elman) < 1e-6
        assert gradient_decay(lstm) > 1e-2
        assert gradient_decay(lstm) > 1e4 * gradient_decay(elman)
        # geometric decay: the Elman norm falls by at least 2x every 5 steps back
        assert np.all(elman[:-5] < 0.5 * elman[5:])
        assert gradient_decay(closed) < 1e-6


def test_gradient_norms_leave_parameters_and_mode_untouched():
    model = _model("gru", 0)
    model.train()
    x, y = _window(0)
    norms = hidden_gradient_norms(model, x, y, loss_at="all")
    assert np.all(norms > 0) and model.training
    assert all(p.grad is None for p in model.parameters())


def test_spectral_norm_is_the_largest_singular_value():
    model = _model("rnn_tanh", 0)
    with torch.no_grad():
        model.rnn.weight_hh_l0.copy_(torch.diag(torch.tensor([3.0, -5.0] + [1.0] * (H - 2))))
    assert recurrent_spectral_norm(model) == 5.0


def test_plot_is_written(tmp_path):
    x, y = _window(0)
    path = plot_gradient_norms(
        {"Elman tanh": hidden_gradient_norms(_model("rnn_tanh", 0), x, y),
         "LSTM (forget bias 3)": hidden_gradient_norms(_model("lstm", 0, 3.0), x, y)},
        tmp_path / "grad_norms.png",
    )
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5000
