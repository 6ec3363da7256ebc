"""What one training window computes for every neural family: the next-token loss and the cut of the graph.

Input: logits ``(T, B, V)`` for the next token at every position of a window and its targets ``(T, B)``
(``arcore.neural.data``'s windows); for a recurrent model, the hidden state carried into the next window.
Output: the mean cross-entropy in nats per predicted token (computed in float32 even under bf16 autocast),
and the hidden state detached, which is what makes back-propagation through time *truncated*.
"""

from __future__ import annotations

from typing import Optional, Union

import torch
import torch.nn.functional as F

Hidden = Union[torch.Tensor, tuple[torch.Tensor, ...]]


def detach_hidden(hidden: Optional[Hidden]) -> Optional[Hidden]:
    """Cut the graph at a window boundary: truncated BPTT keeps the values, drops the history.

    ``None`` (a model that carries no state between windows) stays ``None``.
    """
    if hidden is None:
        return None
    if isinstance(hidden, torch.Tensor):
        return hidden.detach()
    return tuple(h.detach() for h in hidden)


def next_token_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy (nats per token) of ``logits (T, B, V)`` against ``targets (T, B)``."""
    return F.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), targets.reshape(-1))
