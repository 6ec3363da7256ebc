"""Generation speed of the Transformer with and without its key/value cache, in one process.

Both sides are ``TransformerLanguageModel`` over the same weights (``TransformerConfig()`` defaults: 2
blocks of width 128, 4 heads, context 128, a 4,096-token vocabulary, random weights: speed does not depend
on training), fed the same random tokens through ``initial_state`` / ``advance`` / ``next_logprobs``, the
path every decoder takes:

- cached: each ``advance`` runs one token against the stored keys and values (O(1) token-forwards per
  generated token; attention reads the L cached keys);
- uncached (``kv_cache=False``): each ``advance`` re-encodes the whole window (L token-forwards).

Lengths up to the context and past it (where both slide the window, see ``arcore.transformer.lm``). The
log-probabilities of both sides are compared at every step (max absolute difference printed). Prints tokens/s and the
ratio cached / uncached.

Run: ``python benchmarks/transformer_kv_cache.py [--threads 1] [--batch 1] [--tokens 64 128 384] [--device cuda]``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from arcore.transformer.config import TransformerConfig  # noqa: E402
from arcore.transformer.lm import TransformerLanguageModel  # noqa: E402
from arcore.transformer.model import TransformerModel  # noqa: E402

BOS, EOS, VOCAB = 0, 1, 4096


def generate(lm: TransformerLanguageModel, tokens: np.ndarray) -> tuple[float, np.ndarray]:
    """Seconds to read ``tokens (n, batch)`` one step at a time, and the last step's log-probs.

    ``next_logprobs`` copies each step's distribution to numpy, as a decoder does, which also waits for
    the GPU: the timings are synchronous.
    """
    start = time.perf_counter()
    state = lm.initial_state(tokens.shape[1])
    for row in tokens:
        lm.next_logprobs(state)
        state = lm.advance(state, row)
    last = lm.next_logprobs(state)
    return time.perf_counter() - start, last


def max_difference(a: TransformerLanguageModel, b: TransformerLanguageModel, tokens: np.ndarray) -> float:
    """Largest |log P| difference between two models read in lockstep over every step (not timed)."""
    sa, sb, worst = a.initial_state(tokens.shape[1]), b.initial_state(tokens.shape[1]), 0.0
    for row in tokens:
        worst = max(worst, float(np.abs(a.next_logprobs(sa) - b.next_logprobs(sb)).max()))
        sa, sb = a.advance(sa, row), b.advance(sb, row)
    return max(worst, float(np.abs(a.next_logprobs(sa) - b.next_logprobs(sb)).max()))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--tokens", type=int, nargs="+", default=[64, 128, 384])
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cfg = TransformerConfig()
    model = TransformerModel(cfg, VOCAB).to(args.device).eval()
    cached = TransformerLanguageModel(model, bos_id=BOS, eos_id=EOS)
    plain = TransformerLanguageModel(model, bos_id=BOS, eos_id=EOS, kv_cache=False)
    params = sum(p.numel() for p in model.parameters())
    print(f"model: {cfg.layers} x {cfg.d_model}, {cfg.heads} heads, context {cfg.context}, vocab {VOCAB}, "
          f"{params / 1e6:.2f}M parameters; batch {args.batch}, {args.threads} thread(s), {args.device}")
    rng = np.random.default_rng(0)
    generate(cached, rng.integers(2, VOCAB, size=(8, args.batch)))  # warm-up
    for n in args.tokens:
        tokens = rng.integers(2, VOCAB, size=(n, args.batch))
        t_cached = min(generate(cached, tokens)[0] for _ in range(args.repeats))
        t_plain = min(generate(plain, tokens)[0] for _ in range(args.repeats))
        diff = max_difference(cached, plain, tokens)
        rate_c, rate_p = n * args.batch / t_cached, n * args.batch / t_plain
        print(f"{n:5d} tokens: cached {rate_c:8.0f} tok/s   uncached {rate_p:8.0f} tok/s   "
              f"ratio {rate_c / rate_p:5.2f}x   max |dlogp| {diff:.1e}", flush=True)


if __name__ == "__main__":
    main()
