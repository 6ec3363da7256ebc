"""Scoring throughput: BackoffModel.score (vectorized numpy) vs pip's kenlm.Model on the same ARPA file.

Estimates the WikiText-2 5-gram (train on valid), writes its ARPA, loads it in both, scores test.txt in
this process and prints tokens/s and the ratio (tokens = words + one </s> per sentence). Our time is given
for the id array alone and including the word -> id lookup; kenlm's includes its own word lookup
(``Model.score`` per sentence from Python). KenLM's C++ ``query`` did about 5.7 M words/s from ARPA.

    .venv/bin/python benchmarks/ngram_scoring.py [--order 5] [--repeat 3]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from arcore.ngram.arpa import read_arpa, write_arpa
from arcore.ngram.counts import count_ngrams
from arcore.ngram.kneser_ney import estimate_kneser_ney
from arcore.ngram.text import WordVocabulary, read_sentences

CORPUS = Path(__file__).resolve().parents[1] / ".." / "shared" / "corpora" / "wikitext-2"


def best(fn, repeat):
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return out, min(times)


def main() -> None:
    import kenlm

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--order", type=int, default=5)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()

    def prepare(name):
        return [["__unk__" if w == "<unk>" else w for w in s] for s in read_sentences(CORPUS / name)]

    train, test = prepare("valid.txt"), prepare("test.txt")
    vocab = WordVocabulary.from_sentences(train)
    model = estimate_kneser_ney(count_ngrams(vocab.encode(train)[0], args.order, vocab.bos_id, vocab.eos_id,
                                             vocab_size=len(vocab)), unk_id=vocab.unk_id)
    with tempfile.TemporaryDirectory() as tmp:
        arpa = Path(tmp) / "model.arpa"
        write_arpa(model, arpa, vocab.words)
        (ours, words), t_load = best(lambda: read_arpa(arpa), 1)
        theirs = kenlm.Model(str(arpa))
    lines = [" ".join(s) for s in test]
    ids, _ = vocab.encode(test)
    tokens = ids.size
    lp, t_ours = best(lambda: ours.score(ids), args.repeat)
    _, t_ours_enc = best(lambda: ours.score(WordVocabulary.from_words(words).encode(test)[0]), args.repeat)
    total_k, t_kenlm = best(lambda: sum(theirs.score(line) for line in lines), args.repeat)
    total = lp.sum() / np.log(10)
    print(f"{tokens:,} tokens, order {args.order}; our ARPA load {t_load:.2f} s")
    print(f"total log10 prob: ours {total:.4f}, kenlm {total_k:.4f}")
    print(f"arcore score (ids):            {tokens / t_ours / 1e6:6.2f} M tokens/s")
    print(f"arcore score (words -> ids):   {tokens / t_ours_enc / 1e6:6.2f} M tokens/s")
    print(f"kenlm.Model.score (words):     {tokens / t_kenlm / 1e6:6.2f} M tokens/s")
    print(f"ratio ours (ids) / kenlm: {t_kenlm / t_ours:.2f}x; ours (words) / kenlm: {t_kenlm / t_ours_enc:.2f}x")


if __name__ == "__main__":
    main()
