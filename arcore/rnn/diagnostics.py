"""Vanishing and exploding gradients, measured: dLoss/dh_t per time step and the recurrent spectral norm.

Back-propagation through time multiplies the gradient by one Jacobian per step,
``dL/dh_t = dL/dh_T * prod_{k=t+1..T} dh_k/dh_{k-1}``, and for the Elman RNN
``dh_k/dh_{k-1} = diag(tanh'(a_k)) W_hh``. So ``||dL/dh_t||`` shrinks geometrically in ``T - t`` when the
largest singular value of ``W_hh`` (times ``|tanh'| <= 1``) stays below 1, and may grow when it exceeds 1
(Bengio, Simard & Frasconi 1994; Pascanu, Mikolov & Bengio 2013, section 2). The LSTM's cell state adds
instead of multiplying (``c_k = f_k * c_{k-1} + ...``): with forget gates near 1 the gradient passes
almost unchanged (Hochreiter & Schmidhuber 1997).

Input: a model, one window of ids and targets ``(T, B)``. Output:
- ``hidden_gradient_norms``: ``(T,)`` float64, ``||dL/dh_t||`` averaged over the batch, where ``h_t`` is
  the hidden state (all layers; for the LSTM its ``h``) after reading ``ids[t]`` and ``L`` by default is the
  loss of the *last* prediction only, so the curve is exactly the product of Jacobians above;
- ``recurrent_spectral_norm``: the largest singular value of a layer's recurrent matrix ``W_hh`` (for the
  GRU and LSTM the stacked gate matrix, whose norm bounds every gate block's);
- ``plot_gradient_norms``: the curves on a log scale, written as a PNG (matplotlib's Agg canvas, no
  display or pyplot global state needed).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Mapping, Optional

import numpy as np
import torch
import torch.nn.functional as F

from arcore.rnn.model import Hidden, RNNModel, detach_hidden


def hidden_gradient_norms(
    model: torch.nn.Module,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    hidden: Optional[Hidden] = None,
    *,
    loss_at: Literal["last", "all"] = "last",
) -> np.ndarray:
    """``||dL/dh_t||`` for ``t = 0..T-1`` over one window (model in eval mode: no dropout noise).

    The recurrence is unrolled one step at a time so every ``h_t`` is a tensor autograd can differentiate
    against (``nn.LSTM`` run over the whole window keeps the intermediate states internal). Parameter
    gradients are left untouched.
    """
    bare: RNNModel = getattr(model, "module", model)
    was_training = bare.training
    bare.eval()
    try:
        with torch.backends.cudnn.flags(enabled=False):
            # cuDNN refuses an RNN backward in eval mode ("cudnn RNN backward can only be called in training
            # mode"), and eval mode is wanted here (no dropout noise): the unroll uses torch's own kernels.
            steps, batch = inputs.shape
            h = bare.init_hidden(batch) if hidden is None else detach_hidden(hidden)
            emb = bare.encoder(inputs)
            states = []
            for t in range(steps):
                _, h = bare.rnn(emb[t : t + 1], h)
                states.append(h[0] if isinstance(h, tuple) else h)
            # The head reads the top layer of h_t itself (equal to the RNN's output at t), so every path from
            # h_t to the loss, through the head or through later steps, is in the graph of ``states[t]``.
            if loss_at == "last":
                loss = F.cross_entropy(bare.decoder(states[-1][-1]).float(), targets[-1])
            else:
                logits = bare.decoder(torch.stack([s[-1] for s in states])).float()
                loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1))
            grads = torch.autograd.grad(loss, states)
        norms = [g.float().transpose(0, 1).reshape(batch, -1).norm(dim=1).mean().item() for g in grads]
        return np.asarray(norms, dtype=np.float64)
    finally:
        bare.train(was_training)


@torch.no_grad()
def recurrent_spectral_norm(model: torch.nn.Module, layer: int = 0) -> float:
    """Largest singular value of ``W_hh`` of recurrent layer ``layer``.

    >>> from arcore.rnn.config import RNNConfig
    >>> m = RNNModel(RNNConfig(cell="rnn_tanh", emb_size=4, hidden_size=4), vocab_size=5)
    >>> with torch.no_grad(): _ = m.rnn.weight_hh_l0.copy_(2 * torch.eye(4))
    >>> recurrent_spectral_norm(m)
    2.0
    """
    bare: RNNModel = getattr(model, "module", model)
    weight = getattr(bare.rnn, f"weight_hh_l{layer}")
    return float(torch.linalg.matrix_norm(weight.float(), ord=2))


def gradient_decay(norms: np.ndarray) -> float:
    """``||dL/dh_0|| / ||dL/dh_{T-1}||``: far below 1 means vanishing, far above 1 exploding."""
    return float(norms[0] / norms[-1]) if norms[-1] > 0 else float("nan")


def plot_gradient_norms(curves: Mapping[str, np.ndarray], path: Path, *, title: str = "") -> Path:
    """Plot ``{label: norms per time step}`` on a log scale against ``steps before the loss``; write PNG."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 4.0), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    for label, norms in curves.items():
        norms = np.asarray(norms, dtype=np.float64)
        lag = np.arange(len(norms))[::-1]  # T-1-t: how many steps the gradient travelled back
        ax.semilogy(lag, np.maximum(norms, 1e-30), marker=".", label=label)
    ax.set_xlabel("time steps between h_t and the loss (T-1-t)")
    ax.set_ylabel("||dL/dh_t||")
    ax.set_title(title or "gradient norm per time step")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path)
    return path
