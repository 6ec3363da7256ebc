"""Flat token ids -> ``(time, batch)`` streams -> truncated-BPTT windows (word_language_model's layout).

Input: a flat id array, documents back to back each followed by ``eos_id`` (the shard layout).
Output: a ``(n_rows, batch)`` tensor whose column ``b`` is the ``b``-th contiguous slice of the stream, and
windows ``(inputs, targets)`` of ``bptt`` rows, targets shifted by one row. The hidden state left by one
window is the right initial state for the next one, because each column continues where it stopped.

Worked example, ids ``0..9`` in 2 streams with bptt 2::

    batchify([0..9], 2) -> [[0, 5],        windows: rows 0-1 -> targets rows 1-2
                            [1, 6],                 rows 2-3 -> targets rows 3-4
                            [2, 7],                 (the last row is only a target)
                            [3, 8],
                            [4, 9]]

Data parallel training gives rank ``r`` of ``world`` the columns ``[r*batch, (r+1)*batch)`` of
``batchify(ids, batch * world)``: each rank reads its own streams, and all ranks make the same number of
steps.
"""

from __future__ import annotations

import numpy as np
import torch

from arcore.errors import InputError


def batchify(ids: np.ndarray, batch_size: int, *, rank: int = 0, world_size: int = 1,
             setting: str = "rnn.batch_size") -> torch.Tensor:
    """Cut ``ids`` into ``batch_size * world_size`` equal streams; return this rank's ``(n_rows, batch)``.

    The tail that does not fill a whole row is dropped (at most ``batch_size * world_size - 1`` tokens).
    ``setting`` names the config key to lower in the error for too little text.

    >>> batchify(np.arange(10), 2)[:, 1].tolist()
    [5, 6, 7, 8, 9]
    """
    ids = np.asarray(ids)
    if ids.ndim != 1:
        raise InputError(f"token ids must be a flat 1-D array, got shape {ids.shape}")
    streams = batch_size * world_size
    n_rows = len(ids) // streams
    if n_rows < 2:
        raise InputError(
            f"{len(ids)} tokens are too few for {streams} streams (need at least {2 * streams}); "
            f"lower {setting} or provide more text"
        )
    data = torch.from_numpy(ids[: n_rows * streams].astype(np.int64)).view(streams, n_rows).t()
    return data[:, rank * batch_size : (rank + 1) * batch_size].contiguous()


def n_windows(data: torch.Tensor, bptt: int) -> int:
    """Number of windows ``range(0, n_rows - 1, bptt)`` yields (the last may be shorter than bptt)."""
    return (data.size(0) - 1 + bptt - 1) // bptt


def get_window(data: torch.Tensor, index: int, bptt: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Window ``index``: inputs ``data[i:i+L]`` and targets ``data[i+1:i+1+L]``, ``i = index * bptt``."""
    i = index * bptt
    seq_len = min(bptt, data.size(0) - 1 - i)
    return data[i : i + seq_len], data[i + 1 : i + 1 + seq_len]


def check_window_fits(data: torch.Tensor, bptt: int, what: str, section: str = "rnn") -> None:
    """Refuse a stream shorter than one full BPTT window (training on it would silently do nothing useful)."""
    if data.size(0) - 1 < bptt:
        window = "bptt" if section == "rnn" else "context"
        raise InputError(
            f"the {what} split gives {data.size(0)} tokens per stream, shorter than one BPTT window "
            f"of {bptt} + 1; lower {section}.{window} or {section}.batch_size, or provide more text"
        )
