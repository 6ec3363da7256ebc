"""The README's vanishing-gradient figure: ||dL/dh_t|| per time step, Elman RNN against LSTM.

For each cell, train a small model (``--steps`` steps of the default schedule, 64 hidden units) on Tiny
Shakespeare BPE ids (built as in ``rnn_default_quality.py``), then measure, on one 64-step validation
window and the loss of its last prediction, the gradient norm with respect to every hidden state. The
curves, the decay ratio ``||dL/dh_0|| / ||dL/dh_63||`` and the largest singular value of W_hh at each
epoch end are printed, and the plot is written to ``--out`` (default ``rnn_gradient_norms.png``).

    python benchmarks/rnn_gradient_norms.py [--steps 300] [--out docs/rnn_gradient_norms.png]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from rnn_default_quality import load_documents, tokenize  # noqa: E402

from arcore.neural.data import batchify, get_window  # noqa: E402
from arcore.rnn.checkpoint import load_model  # noqa: E402
from arcore.rnn.config import RNNConfig  # noqa: E402
from arcore.rnn.diagnostics import gradient_decay, hidden_gradient_norms, plot_gradient_norms  # noqa: E402
from arcore.rnn.train import train_rnn  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=Path("rnn_gradient_norms.png"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    train_docs, valid_docs = load_documents()
    tok, train_tok, valid_tok = tokenize(train_docs, valid_docs)
    ids = np.fromiter((t for d in train_tok for t in d), dtype=np.int64)
    valid = np.fromiter((t for d in valid_tok for t in d), dtype=np.int64)
    x, y = get_window(batchify(valid, 8), 0, 64)
    curves = {}
    for cell, label in (("rnn_tanh", "Elman RNN (tanh)"), ("lstm", "LSTM")):
        cfg = RNNConfig(cell=cell, emb_size=64, hidden_size=64, max_steps=args.steps, epochs=1,
                        lr=0.003 if cell == "rnn_tanh" else 0.01)
        with tempfile.TemporaryDirectory() as tmp:
            result = train_rnn(cfg, ids, valid, tok.get_vocab_size(), Path(tmp))
            model = load_model(result.model_dir)
        norms = hidden_gradient_norms(model, x, y)
        curves[f"{label}, after {result.steps} steps"] = norms
        h = result.history[-1]
        print(f"{label}: valid loss {h['valid_loss']:.3f}, sigma_max(W_hh) {h['spectral_norm_whh']:.2f}, "
              f"||dL/dh_0|| / ||dL/dh_63|| = {gradient_decay(norms):.2e}")
        print("  norms every 8 steps back:", " ".join(f"{v:.1e}" for v in norms[::-8]))
    plot_gradient_norms(curves, args.out, title="Tiny Shakespeare: gradient of the last loss w.r.t. h_t")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
