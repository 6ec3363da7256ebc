"""The mask made visible: the attention probabilities of each head of one layer on one sample, as a PNG.

Input: a ``TransformerModel`` and one sequence of token ids (at most ``context`` of them; longer ones are
cut to their first ``context``). Output: a figure with one heat map per head of the last block (by
default), query position down, key position across: row ``t`` is the distribution position ``t`` attends
with, and everything right of the diagonal is exactly 0, the causal mask. Drawn on matplotlib's Agg canvas
(no pyplot, no display, no global state), as ``arcore.rnn.diagnostics`` draws its curves.

    >>> plot_attention(model, ids[:48], out_dir / "attention.png", labels=tok.id_to_token)  # doctest: +SKIP
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import torch

from arcore.errors import InputError
from arcore.transformer.model import TransformerModel


def attention_maps(model: TransformerModel, ids: Sequence[int], layer: int = -1) -> np.ndarray:
    """``(heads, T, T)`` float64 attention probabilities of block ``layer`` on ``ids`` (eval mode)."""
    ids = np.asarray(ids, dtype=np.int64).ravel()[: model.cfg.context]
    if ids.size == 0:
        raise InputError("plot_attention needs at least one token id")
    x = torch.as_tensor(ids, device=next(model.parameters()).device).view(1, -1)
    return model.attention_weights(x, layer)[0].double().cpu().numpy()


def plot_attention(model: TransformerModel, ids: Sequence[int], path: Path, *, layer: int = -1,
                   labels: Optional[Callable[[int], str]] = None, title: str = "") -> Path:
    """Write one heat map per head of block ``layer`` for the sample ``ids`` to ``path`` (PNG)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    maps = attention_maps(model, ids, layer)
    heads, t, _ = maps.shape
    cols = min(heads, 4)
    rows = math.ceil(heads / cols)
    fig = Figure(figsize=(3.2 * cols + 0.8, 3.2 * rows + 0.6), dpi=100)
    FigureCanvasAgg(fig)
    tick_labels = None
    if labels is not None and t <= 40:
        tick_labels = [str(labels(int(i))) for i in np.asarray(ids).ravel()[:t]]
    image = None
    for h in range(heads):
        ax = fig.add_subplot(rows, cols, h + 1)
        image = ax.imshow(maps[h], cmap="viridis", vmin=0.0, vmax=1.0, interpolation="nearest")
        ax.set_title(f"head {h}", fontsize=9)
        ax.set_xlabel("key position", fontsize=8)
        ax.set_ylabel("query position", fontsize=8)
        if tick_labels is not None:
            ax.set_xticks(range(t), tick_labels, rotation=90, fontsize=5)
            ax.set_yticks(range(t), tick_labels, fontsize=5)
    fig.colorbar(image, ax=fig.axes, shrink=0.8, label="attention probability")
    n_layers = len(model.blocks)
    fig.suptitle(title or f"causal self-attention, layer {layer % n_layers + 1} of {n_layers}, {t} tokens")
    path = Path(path)
    fig.savefig(path)
    return path
