"""The lecture's binary-addition toy: an Elman RNN learns the carry and adds numbers of any length.

Task: given two non-negative integers ``a`` and ``b`` written in binary, output the bits of ``a + b``.
The RNN reads one bit of each number per time step, *least significant first*, and emits one bit of the
sum per step; the carry is the only thing it has to remember, so a network that learned it on 8-bit
numbers adds 64-bit numbers too. Worked example, 6 + 3 = 9, 4 bits plus one step for the final carry::

    t        0  1  2  3  4
    a = 6    0  1  1  0  0      (bits of 6 = 0110, read right to left, then a padding 0)
    b = 3    1  1  0  0  0
    sum = 9  1  0  0  1  0      (carry after t: 0 1 1 0 0)

The network has the lecture's shapes: input weights 2x16, recurrent weights 16x16, output weights 16x1,
``h_t = sigmoid(x_t W_xh + h_{t-1} W_hh + b_h)``, ``y_t = sigmoid(h_t W_hy + b_y)``, trained with binary
cross-entropy on random 8-bit pairs. The feed-forward baseline sees both 8-bit numbers at once (16
inputs) and outputs 9 bits: it can learn 8-bit addition but its input layer has no place for a 9th bit,
so it cannot even be asked about 16-bit numbers (``ff_accuracy`` is reported for 8 bits only).

Output: ``AdditionResult`` with the exact-sum accuracy (every bit of the sum right) per bit width.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from arcore.rnn.config import AdditionConfig  # torch-free, so the CLI can show defaults without torch

__all__ = ["AdditionConfig", "AdditionResult", "ElmanAdder", "addition_batch", "bits_to_int", "run_binary_addition"]


@dataclass(frozen=True)
class AdditionResult:
    rnn_accuracy: dict[int, float]  # bit width -> fraction of sums with every bit right
    ff_accuracy: dict[int, float]  # only train_bits: the feed-forward net has no input for longer numbers
    rnn_params: int
    ff_params: int
    steps: int
    seconds: float
    final_loss: float
    config: dict = field(default_factory=dict)

    def as_dict(self) -> dict[str, float]:
        out = {f"rnn_exact_acc_{n}bit": acc for n, acc in self.rnn_accuracy.items()}
        out.update({f"ff_exact_acc_{n}bit": acc for n, acc in self.ff_accuracy.items()})
        out.update(rnn_params=self.rnn_params, ff_params=self.ff_params, steps=self.steps,
                   seconds=self.seconds, final_loss=self.final_loss)
        return out


def addition_batch(n: int, width: int, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs ``(width+1, n, 2)`` and sum bits ``(width+1, n)`` of ``n`` random ``width``-bit pairs.

    Bits are little-endian along time; step ``width`` reads two padding zeros and emits the final carry.
    Random numbers are drawn as random bits and added with a ripple carry, so any width is exact.
    """
    a = rng.integers(0, 2, size=(width + 1, n), dtype=np.int64)
    b = rng.integers(0, 2, size=(width + 1, n), dtype=np.int64)
    a[width] = b[width] = 0
    total = np.empty_like(a)
    carry = np.zeros(n, dtype=np.int64)
    for t in range(width + 1):
        column = a[t] + b[t] + carry
        total[t], carry = column & 1, column >> 1
    x = torch.from_numpy(np.stack([a, b], axis=-1).astype(np.float32))
    return x, torch.from_numpy(total.astype(np.float32))


def bits_to_int(bits) -> int:
    """Little-endian 0/1 bits -> Python int: ``[0, 1, 1, 0] -> 6``."""
    return sum(int(bit) << i for i, bit in enumerate(bits))


class ElmanAdder(nn.Module):
    """The lecture's Elman RNN: 2 -> 16 (sigmoid, recurrent 16x16) -> 1 (sigmoid) per time step."""

    def __init__(self, hidden_size: int = 16):
        super().__init__()
        self.w_xh = nn.Parameter(torch.empty(2, hidden_size).uniform_(-1, 1))
        self.w_hh = nn.Parameter(torch.empty(hidden_size, hidden_size).uniform_(-1, 1))
        self.b_h = nn.Parameter(torch.zeros(hidden_size))
        self.w_hy = nn.Parameter(torch.empty(hidden_size, 1).uniform_(-1, 1))
        self.b_y = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x (T, B, 2)`` -> logits of the sum bits ``(T, B)`` (apply sigmoid for probabilities)."""
        h = x.new_zeros(x.size(1), self.w_hh.size(0))
        logits = []
        for t in range(x.size(0)):
            h = torch.sigmoid(x[t] @ self.w_xh + h @ self.w_hh + self.b_h)
            logits.append((h @ self.w_hy + self.b_y).squeeze(1))
        return torch.stack(logits)


def exact_accuracy(logits: torch.Tensor, targets: torch.Tensor, time_dim: int = 0) -> float:
    """Fraction of examples whose every predicted bit (logit > 0) equals the target bit."""
    correct = ((logits > 0).float() == targets).all(dim=time_dim)
    return float(correct.float().mean())


def _fit(model: nn.Module, batches, cfg: AdditionConfig) -> float:
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    loss = torch.tensor(0.0)
    for x, y in batches:
        opt.zero_grad()
        loss = nn.functional.binary_cross_entropy_with_logits(model(x), y)
        loss.backward()
        opt.step()
    return float(loss.detach())


def run_binary_addition(cfg: AdditionConfig = AdditionConfig()) -> AdditionResult:
    """Train the Elman adder and the feed-forward baseline on ``train_bits`` numbers; evaluate both."""
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    started = time.perf_counter()
    rnn = ElmanAdder(cfg.hidden_size)
    train = [addition_batch(cfg.batch_size, cfg.train_bits, rng) for _ in range(cfg.steps)]
    final_loss = _fit(rnn, train, cfg)

    n_in, n_out = 2 * cfg.train_bits, cfg.train_bits + 1
    ff = nn.Sequential(nn.Linear(n_in, 4 * cfg.hidden_size), nn.Sigmoid(), nn.Linear(4 * cfg.hidden_size, n_out))
    flat = [(x[:-1].transpose(0, 1).reshape(x.size(1), -1), y.t()) for x, y in train]
    _fit(ff, flat, cfg)

    rnn_acc, ff_acc = {}, {}
    with torch.no_grad():
        for width in cfg.eval_bits:
            x, y = addition_batch(cfg.eval_samples, width, rng)
            rnn_acc[width] = exact_accuracy(rnn(x), y)
            if width == cfg.train_bits:
                ff_acc[width] = exact_accuracy(ff(x[:-1].transpose(0, 1).reshape(x.size(1), -1)), y.t(), 1)
    return AdditionResult(
        rnn_accuracy=rnn_acc, ff_accuracy=ff_acc,
        rnn_params=sum(p.numel() for p in rnn.parameters()), ff_params=sum(p.numel() for p in ff.parameters()),
        steps=cfg.steps, seconds=time.perf_counter() - started, final_loss=final_loss,
        config=cfg.model_dump(mode="json"),
    )
