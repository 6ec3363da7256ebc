"""Training throughput of ``train_rnn`` against a bare PyTorch loop of the same model, same token ids.

The model is word_language_model's default (LSTM, 2 layers of 200, dropout 0.2, bptt 35, batch 20,
SGD lr 20, clip 0.25, untied); the ids are Tiny Shakespeare in a 4,096-token byte-level BPE (built as in
``rnn_default_quality.py``). Each side trains ``--steps`` optimizer steps; the sides alternate
``--rounds`` times in this one process so that a busy machine slows both alike, and the best round of each
is compared. ``train_rnn``'s rate is its own ``tokens_per_s`` (train loop only, evaluation excluded, with
its per-step callback bookkeeping and checkpoint every 200 steps included); the bare loop is timed the
same way. Target: ratio >= 0.95.

    python benchmarks/rnn_throughput.py [--steps 100] [--rounds 3] [--threads 2]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from rnn_default_quality import load_documents, tokenize  # noqa: E402

from arcore.neural.data import batchify, get_window  # noqa: E402
from arcore.rnn.config import RNNConfig  # noqa: E402
from arcore.rnn.model import RNNModel  # noqa: E402
from arcore.rnn.train import train_rnn  # noqa: E402

CFG = RNNConfig(cell="lstm", emb_size=200, hidden_size=200, layers=2, dropout=0.2, tie_weights=False,
                batch_size=20, bptt=35, lr=20.0, clip=0.25, optimizer="sgd", epochs=1, checkpoint_every=200)


def bare_loop(ids: np.ndarray, vocab: int, steps: int) -> float:
    """word_language_model's train(): returns tokens/s over ``steps`` steps."""
    torch.manual_seed(CFG.seed)
    model = RNNModel(CFG, vocab)
    data = batchify(ids, CFG.batch_size)
    model.train()
    hidden = model.init_hidden(CFG.batch_size)
    tokens, start, total_loss = 0, time.perf_counter(), 0.0
    for batch in range(steps):
        x, y = get_window(data, batch, CFG.bptt)
        model.zero_grad()
        hidden = tuple(h.detach() for h in hidden)
        output, hidden = model(x, hidden)
        loss = torch.nn.functional.cross_entropy(output.view(-1, vocab), y.reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), CFG.clip)
        for p in model.parameters():
            p.data.add_(p.grad, alpha=-CFG.lr)
        total_loss += loss.item()
        tokens += y.numel()
    return tokens / (time.perf_counter() - start)


def pipeline(ids: np.ndarray, valid: np.ndarray, vocab: int, steps: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        cfg = CFG.model_copy(update={"max_steps": steps})
        seen = []
        return train_rnn(cfg, ids, valid, vocab, Path(tmp), on_step=lambda s, m: seen.append(m["loss"])).tokens_per_s


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    train_docs, valid_docs = load_documents()
    tok, train_tok, valid_tok = tokenize(train_docs, valid_docs)
    ids = np.fromiter((t for d in train_tok for t in d), dtype=np.int64)
    valid = np.fromiter((t for d in valid_tok for t in d), dtype=np.int64)[:5000]
    vocab = tok.get_vocab_size()
    bare, ours = [], []
    for r in range(args.rounds):
        bare.append(bare_loop(ids, vocab, args.steps))
        ours.append(pipeline(ids, valid, vocab, args.steps))
        print(f"round {r}: bare {bare[-1]:.0f} tok/s, train_rnn {ours[-1]:.0f} tok/s", flush=True)
    print(f"best: bare {max(bare):.0f} tok/s, train_rnn {max(ours):.0f} tok/s, ratio {max(ours) / max(bare):.3f}")


if __name__ == "__main__":
    main()
