"""Does the default ``RNNConfig`` beat a 5-gram Kneser-Ney model on Tiny Shakespeare, and how fast?

Both sides run in this one process on the same token ids:
- documents: Tiny Shakespeare split at blank lines (one speech per document), the first 90% of documents
  for training and the rest for validation;
- tokens: a byte-level BPE with a 4,096-token vocabulary (``<s>``, ``</s>``, ``<unk>``, ``<pad>`` included)
  trained here with HF ``tokenizers`` on the training documents; each document is followed by ``</s>``;
- the 5-gram: interpolated modified Kneser-Ney (Chen & Goodman 1998, eqs. 17 and 26; lower orders from
  continuation counts, n-grams starting with ``<s>`` keep raw counts as KenLM does), written out below;
- the RNN: ``train_rnn`` with ``RNNConfig()`` defaults, scored per document with ``RNNLanguageModel.score``.

Bits per byte = total NLL (nats, every document's tokens and its ``</s>``) / (ln 2 * (UTF-8 bytes + 1 per
document)). Run: ``python benchmarks/rnn_default_quality.py [--threads 2] [--epochs N]``.
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from arcore.rnn.config import RNNConfig  # noqa: E402
from arcore.rnn.lm import RNNLanguageModel  # noqa: E402
from arcore.rnn.train import train_rnn  # noqa: E402

CORPUS = ROOT / "../shared/corpora/tinyshakespeare/input.txt"
SPECIALS = ["<s>", "</s>", "<unk>", "<pad>"]


def load_documents() -> tuple[list[str], list[str]]:
    docs = [d.strip("\n") for d in CORPUS.read_text(encoding="utf-8").split("\n\n") if d.strip()]
    cut = int(0.9 * len(docs))
    return docs[:cut], docs[cut:]


def tokenize(train_docs, valid_docs, vocab_size=4096):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIALS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(train_docs, trainer)
    eos = tok.token_to_id("</s>")

    def flat(docs):
        return [enc.ids + [eos] for enc in tok.encode_batch(docs)]

    return tok, flat(train_docs), flat(valid_docs)


class KneserNey:
    """Interpolated modified Kneser-Ney of order ``n`` over token-id documents (each ending in ``</s>``)."""

    def __init__(self, docs: list[list[int]], order: int, bos: int, vocab: int):
        self.order, self.bos, self.vocab = order, bos, vocab
        raw = [Counter() for _ in range(order + 1)]
        for doc in docs:
            seq = [bos] + doc
            for n in range(1, order + 1):
                for i in range(max(n - 1, 1), len(seq)):
                    raw[n][tuple(seq[i - n + 1 : i + 1])] += 1
        adj = [None] * (order + 1)
        adj[order] = raw[order]
        for n in range(1, order):
            cont = Counter(g[1:] for g in raw[n + 1])
            adj[n] = Counter({g: (c if g[0] == bos else cont[g]) for g, c in raw[n].items()})
        self.adj, self.stats, self.disc = adj, [None] * (order + 1), [None] * (order + 1)
        for n in range(1, order + 1):
            coc = Counter(c for c in adj[n].values() if c <= 4)
            y = coc[1] / (coc[1] + 2 * coc[2])
            self.disc[n] = (0.0, 1 - 2 * y * coc[2] / coc[1], 2 - 3 * y * coc[3] / coc[2], 3 - 4 * y * coc[4] / coc[3])
            st = defaultdict(lambda: [0, 0.0])
            for g, c in adj[n].items():
                s = st[g[:-1]]
                s[0] += c
                s[1] += self.disc[n][min(c, 3)]
            self.stats[n] = dict(st)

    def logprob(self, hist: list[int], w: int) -> float:
        p = 1.0 / self.vocab
        for n in range(1, self.order + 1):
            if len(hist) < n - 1:
                break
            h = tuple(hist[len(hist) - n + 1 :]) if n > 1 else ()
            st = self.stats[n].get(h)
            if st is None:
                break
            c = self.adj[n].get(h + (w,), 0)
            p = max(c - self.disc[n][min(c, 3)], 0.0) / st[0] + st[1] / st[0] * p
        return math.log(p)

    def score_docs(self, docs: list[list[int]]) -> float:
        total = 0.0
        for doc in docs:
            seq = [self.bos] + doc
            for i in range(1, len(seq)):
                total -= self.logprob(seq[max(0, i - self.order + 1) : i], seq[i])
        return total


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--set", action="append", default=[], help="override an RNNConfig field, key=value")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    train_docs, valid_docs = load_documents()
    t0 = time.perf_counter()
    tok, train_tok, valid_tok = tokenize(train_docs, valid_docs)
    bos, eos = tok.token_to_id("<s>"), tok.token_to_id("</s>")
    vocab = tok.get_vocab_size()
    train_ids = np.fromiter((t for d in train_tok for t in d), dtype=np.int64)
    valid_ids = np.fromiter((t for d in valid_tok for t in d), dtype=np.int64)
    valid_bytes = sum(len(d.encode("utf-8")) + 1 for d in valid_docs)
    print(f"documents {len(train_docs)}/{len(valid_docs)}  tokens {len(train_ids)}/{len(valid_ids)}  "
          f"vocab {vocab}  valid bytes {valid_bytes}  tokenize {time.perf_counter() - t0:.1f}s")

    t0 = time.perf_counter()
    kn = KneserNey(train_tok, 5, bos, vocab - 2)  # <s> and <pad> are never predicted
    kn_bpb = kn.score_docs(valid_tok) / (math.log(2) * valid_bytes)
    print(f"5-gram KN: valid bpb {kn_bpb:.4f}  ({time.perf_counter() - t0:.1f}s)")

    overrides = dict(kv.split("=", 1) for kv in args.set)
    cfg = RNNConfig.model_validate({**RNNConfig().model_dump(), **overrides})
    print("rnn config:", cfg.model_dump_json())
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()

        def on_epoch(epoch, m):
            print(f"  epoch {epoch}: train {m['train_loss']:.3f} valid {m['valid_loss']:.3f} "
                  f"bpb~{m['valid_bpb']:.4f} lr {m['lr']:.2g} {m['tokens_per_s']:.0f} tok/s "
                  f"sigma_max {m['spectral_norm_whh']:.2f} decay {m['grad_h_decay']:.2e} "
                  f"[{time.perf_counter() - t0:.0f}s]", flush=True)

        result = train_rnn(cfg, train_ids, valid_ids, vocab, Path(tmp), valid_bytes=valid_bytes, on_epoch=on_epoch)
        train_s = time.perf_counter() - t0
        t1 = time.perf_counter()
        lm = RNNLanguageModel.from_dir(result.model_dir, bos_id=bos, eos_id=eos)
        rnn_bpb = -lm.score(valid_ids).sum() / (math.log(2) * valid_bytes)
        print(f"RNN: train {train_s:.1f}s, {result.steps} steps, {result.epochs} epochs, "
              f"{result.tokens_per_s:.0f} tok/s; per-document valid bpb {rnn_bpb:.4f} "
              f"(score {time.perf_counter() - t1:.1f}s)")
    print(f"RNN / 5-gram KN bits per byte: {rnn_bpb / kn_bpb:.3f}")


if __name__ == "__main__":
    main()
