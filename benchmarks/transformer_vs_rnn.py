"""Masking against recurrence on Tiny Shakespeare: training speed and quality after the same wall-clock time.

Both sides run in this one process, on the same token ids (``benchmarks/rnn_default_quality.py``'s data:
Tiny Shakespeare split at blank lines, first 90% of documents for training, a 4,096-token byte-level BPE
trained on them, ``</s>`` after every document), trained by the same loop (``arcore.rnn.train``):

- Transformer: ``TransformerConfig()`` defaults (2 x 128, 4 heads, context 128, batch 32, AdamW 2e-3);
- RNN: ``RNNConfig()`` defaults (1-layer LSTM, batch 32, bptt 32, AdamW 1e-2), with ``hidden_size``
  (= ``emb_size``, tied) chosen so the parameter count is as close as possible to the Transformer's.

1. Training throughput: tokens/s over ``--probe-steps`` optimizer steps each, after 3 warm-up steps.
   Ratio Transformer / RNN.
2. Quality at equal time: each trains for the number of steps its measured rate fits into ``--budget``
   seconds (actual times printed, epoch-end validations included), keeping the best epoch's weights as
   the stage does, then valid bits per byte scored per document (``LanguageModel.score``, each document
   from its start, the ``arcore.evaluate`` convention). Ratio Transformer / RNN.

On a GPU (``device: auto`` in both configs) training runs under bf16 autocast and scoring on the GPU.

Run: ``python benchmarks/transformer_vs_rnn.py [--threads 2] [--budget 120] [--corpus input.txt]``.
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import rnn_default_quality  # noqa: E402
from rnn_default_quality import load_documents, tokenize  # noqa: E402

from arcore.rnn.config import RNNConfig  # noqa: E402
from arcore.rnn.lm import RNNLanguageModel  # noqa: E402
from arcore.rnn.model import RNNModel  # noqa: E402
from arcore.rnn.train import train_rnn  # noqa: E402
from arcore.transformer.config import TransformerConfig  # noqa: E402
from arcore.transformer.lm import TransformerLanguageModel  # noqa: E402
from arcore.transformer.model import TransformerModel  # noqa: E402
from arcore.transformer.train import train_transformer  # noqa: E402


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def matched_rnn(target: int, vocab: int) -> RNNConfig:
    """``RNNConfig()`` with the tied width (multiple of 8) whose parameter count is closest to ``target``."""
    def size(h: int) -> int:
        return n_params(RNNModel(RNNConfig(emb_size=h, hidden_size=h), vocab))

    best = min(range(64, 513, 8), key=lambda h: abs(size(h) - target))
    return RNNConfig(emb_size=best, hidden_size=best)


def run(name, train, cfg, data, steps, lm_class, bos, eos, device="cpu"):
    """Train ``steps`` steps from scratch; return (steady tokens/s after 3 warm-up steps, valid bpb)."""
    train_ids, valid_ids, vocab, valid_bytes = data
    stamps: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        result = train(cfg.model_copy(update={"max_steps": steps, "checkpoint_every": 0, "epochs": 100}),
                       train_ids, valid_ids, vocab, Path(tmp), valid_bytes=valid_bytes,
                       on_step=lambda step, m: stamps.append(time.perf_counter()))
        wall = time.perf_counter() - t0
        lm = lm_class.from_dir(result.model_dir, bos_id=bos, eos_id=eos, device=device)
        t1 = time.perf_counter()
        bpb = -lm.score(valid_ids).sum() / (math.log(2) * valid_bytes)
        score_s = time.perf_counter() - t1
    # Steady rate: steps 4..N (first steps pay one-off allocation and kernel selection; on a GPU that
    # dominates a short probe). Epoch-end validations inside the span count against it.
    warm = min(3, len(stamps) - 1)
    rate = (len(stamps) - 1 - warm) * cfg.batch_size * cfg.bptt / max(stamps[-1] - stamps[warm], 1e-9)
    print(f"  {name}: {result.steps} steps ({result.epochs} epoch(s) closed), {result.train_tokens} tokens, "
          f"train+valid {wall:.1f}s, steady {rate:.0f} tok/s, valid bpb {bpb:.4f} (score {score_s:.1f}s)",
          flush=True)
    return rate, bpb


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--budget", type=float, default=120.0, help="training seconds per model")
    ap.add_argument("--probe-steps", type=int, default=30)
    ap.add_argument("--corpus", type=Path, default=rnn_default_quality.CORPUS)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rnn_default_quality.CORPUS = args.corpus
    device = "cuda" if torch.cuda.is_available() else "cpu"
    train_docs, valid_docs = load_documents()
    tok, train_tok, valid_tok = tokenize(train_docs, valid_docs)
    bos, eos, vocab = tok.token_to_id("<s>"), tok.token_to_id("</s>"), tok.get_vocab_size()
    train_ids = np.fromiter((t for d in train_tok for t in d), dtype=np.int64)
    valid_ids = np.fromiter((t for d in valid_tok for t in d), dtype=np.int64)
    valid_bytes = sum(len(d.encode("utf-8")) + 1 for d in valid_docs)
    data = (train_ids, valid_ids, vocab, valid_bytes)
    tcfg = TransformerConfig()
    t_params = n_params(TransformerModel(tcfg, vocab))
    rcfg = matched_rnn(t_params, vocab)
    r_params = n_params(RNNModel(rcfg, vocab))
    print(f"tokens {len(train_ids)}/{len(valid_ids)}, vocab {vocab}, valid bytes {valid_bytes}, "
          f"{args.threads} threads, {device}")
    print(f"transformer {tcfg.layers} x {tcfg.d_model}, context {tcfg.context}: {t_params / 1e6:.3f}M parameters")
    print(f"rnn {rcfg.cell} {rcfg.layers} x {rcfg.hidden_size}, bptt {rcfg.bptt}: {r_params / 1e6:.3f}M parameters")

    sides = {"transformer": (train_transformer, tcfg, TransformerLanguageModel),
             "rnn": (train_rnn, rcfg, RNNLanguageModel)}
    print(f"1. throughput over {args.probe_steps} steps")
    rates = {}
    for name, (train, cfg, lm_class) in sides.items():
        rates[name], _ = run(name, train, cfg, data, args.probe_steps, lm_class, bos, eos, device)
    print(f"training tokens/s transformer / rnn: {rates['transformer'] / rates['rnn']:.2f}")

    print(f"2. quality after {args.budget:.0f}s of training each")
    bpb = {}
    for name, (train, cfg, lm_class) in sides.items():
        tokens_per_step = cfg.batch_size * cfg.bptt
        steps = max(1, int(args.budget * rates[name] / tokens_per_step))
        _, bpb[name] = run(name, train, cfg, data, steps, lm_class, bos, eos, device)
    print(f"valid bits per byte transformer / rnn after {args.budget:.0f}s: {bpb['transformer'] / bpb['rnn']:.3f}")


if __name__ == "__main__":
    main()
