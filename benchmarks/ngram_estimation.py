"""Counting + modified Kneser-Ney estimation: arcore.ngram (numpy) vs a straightforward pure-Python dict version.

Both sides run in this process on the same token ids (WikiText-2 valid, word level, as in the corpora
README, or every shared corpus with --corpus all; --copies 10 repeats it); the script checks that both give
the same probabilities and prints times, peak traced memory and the speed ratio.

    .venv/bin/python benchmarks/ngram_estimation.py [--order 5] [--corpus wikitext|all] [--copies 1]
                                                    [--memory-mb 1024] [--no-python]

lmplz's reference on this machine class: about 0.6 s and 49 MB for the WikiText-2 valid 5-gram.
"""

from __future__ import annotations

import argparse
import math
import time
import tracemalloc
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

from arcore.ngram.counts import count_ngrams
from arcore.ngram.kneser_ney import estimate_kneser_ney
from arcore.ngram.text import WordVocabulary, read_sentences

CORPORA = Path(__file__).resolve().parents[1] / ".." / "shared" / "corpora"


def load(corpus: str, copies: int):
    paths = [CORPORA / "wikitext-2" / "valid.txt"]
    if corpus == "all":
        paths += [CORPORA / "wikitext-2" / "test.txt", CORPORA / "tinyshakespeare" / "input.txt"]
    sentences = [["__unk__" if w == "<unk>" else w for w in s] for p in paths for s in read_sentences(p)]
    vocab = WordVocabulary.from_sentences(sentences)
    ids, _ = vocab.encode(sentences)
    return vocab, np.tile(ids, copies)


def python_kneser_ney(ids: list[int], order: int, vocab_size: int, bos: int, eos: int) -> dict:
    """Dict counting and lmplz's formulas, one n-gram at a time. Returns {ngram tuple: log10 prob}."""
    raw = [Counter() for _ in range(order)]
    sentence = [bos]
    for w in ids:
        sentence.append(w)
        if w == eos:
            for n in range(1, order + 1):
                for i in range(len(sentence) - n + 1):
                    if n > 1 or i > 0:
                        raw[n - 1][tuple(sentence[i:i + n])] += 1
            sentence = [bos]
    adjusted = [Counter() for _ in range(order)]
    adjusted[order - 1] = raw[order - 1]
    for n in range(order - 1, 0, -1):
        for gram, c in raw[n - 1].items():
            if gram[0] == bos:
                adjusted[n - 1][gram] = c
        for gram in raw[n]:
            if gram[1] != bos:
                adjusted[n - 1][gram[1:]] += 1
    discounts = []
    for n in range(order):
        nk = Counter(c for c in adjusted[n].values() if c <= 4)
        y = nk[1] / (nk[1] + 2 * nk[2])
        discounts.append([0.0] + [k - (k + 1) * y * nk[k + 1] / nk[k] for k in (1, 2, 3)])
    probs: dict = {}
    prev: dict = {}
    for n in range(1, order + 1):
        d = discounts[n - 1]
        total, gamma = defaultdict(float), defaultdict(float)
        for gram, a in adjusted[n - 1].items():
            total[gram[:-1]] += a
            gamma[gram[:-1]] += d[min(a, 3)]
        current = {}
        for gram, a in adjusted[n - 1].items():
            ctx = gram[:-1]
            lower = prev[gram[1:]] if n > 1 else 1.0 / (vocab_size - 1)
            current[gram] = (a - d[min(a, 3)]) / total[ctx] + gamma[ctx] / total[ctx] * lower
        probs.update({g: math.log10(p) for g, p in current.items()})
        prev = current
    return probs


def timed(fn, repeat: int = 1):
    """Best wall time of ``repeat`` runs (tracemalloc off: it slows Python code far more than numpy)."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return out, best


def peak_memory(fn) -> int:
    """Peak bytes allocated by ``fn`` as traced by tracemalloc (numpy buffers included)."""
    tracemalloc.start()
    fn()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--order", type=int, default=5)
    ap.add_argument("--corpus", choices=["wikitext", "all"], default="wikitext")
    ap.add_argument("--copies", type=int, default=1)
    ap.add_argument("--memory-mb", type=int, default=1024, help="count_ngrams memory budget")
    ap.add_argument("--no-python", action="store_true", help="skip the pure-Python side (large corpora)")
    args = ap.parse_args()
    vocab, ids = load(args.corpus, args.copies)
    print(f"corpus {args.corpus} x{args.copies}: {ids.size:,} tokens, vocabulary {len(vocab):,}, order {args.order}")

    # k copies make every count a multiple of k, so n1..n3 are 0 and lmplz itself would need
    # --discount_fallback: use its default discounts then (timing is unaffected).
    fallback = (0.5, 1.0, 1.5) if args.copies > 1 else None
    if fallback:
        print("copies > 1: counts-of-counts 1..3 are empty, using lmplz's fallback discounts 0.5 1 1.5")

    def ours():
        counts = count_ngrams(ids, args.order, vocab.bos_id, vocab.eos_id, vocab_size=len(vocab),
                              memory_budget_bytes=args.memory_mb << 20)
        return estimate_kneser_ney(counts, unk_id=vocab.unk_id, discount_fallback=fallback)

    model, t_np = timed(ours, repeat=3 if args.copies == 1 else 1)
    mem_np = peak_memory(ours)
    print(f"arcore.ngram (numpy):   {t_np:7.2f} s   peak traced memory {mem_np / 2**20:7.1f} MiB   "
          f"{ids.size / t_np / 1e6:.2f} M tokens/s   n-grams {model.num_ngrams()}")
    if args.no_python:
        return
    id_list = ids.tolist()
    probs, t_py = timed(lambda: python_kneser_ney(id_list, args.order, len(vocab), vocab.bos_id, vocab.eos_id))
    print(f"pure Python dicts:      {t_py:7.2f} s")
    # same model? compare every highest-order probability
    grams = model.ngrams(args.order)
    ours_log10 = model.logprob[args.order - 1] / math.log(10)
    theirs = np.array([probs[tuple(g)] for g in grams.tolist()])
    print(f"max |log10 p| difference over {len(grams):,} {args.order}-grams: {np.abs(ours_log10 - theirs).max():.2e}")
    print(f"speed-up numpy / pure Python: {t_py / t_np:.1f}x")


if __name__ == "__main__":
    main()
