"""Scoring throughput and load time: our binary BackoffModel vs pip's kenlm.Model on the same 5-gram.

Estimates an order-N Kneser-Ney model (or reads ``--arpa``), writes its ARPA file and our binary
directory (``save_binary``), then in one process: loads both (kenlm from ARPA; pip's module cannot build
KenLM's own binary, which needs the ``build_binary`` program), scores the test text with each, and
repeats the timings interleaved (ours on ids, ours including the word -> id lookup, kenlm) so that load
from other processes hits all three alike; reports medians and the median of per-repeat ratios.
Tokens = words + one </s> per sentence. kenlm's time includes its own word lookup (``Model.score`` per
sentence from Python).

    .venv/bin/python benchmarks/ngram_scoring.py                      # WikiText-2: train valid, score test
    .venv/bin/python benchmarks/ngram_scoring.py --train T --test S   # any whitespace text, one sentence a line
    .venv/bin/python benchmarks/ngram_scoring.py --arpa M.arpa --test S [--binary DIR] [--repeat 7]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from arcore.ngram.arpa import read_arpa, write_arpa
from arcore.ngram.binary import is_binary_model, load_binary, save_binary
from arcore.ngram.counts import count_ngrams
from arcore.ngram.kneser_ney import estimate_kneser_ney
from arcore.ngram.text import WordVocabulary, read_sentences

CORPUS = Path(__file__).resolve().parents[1] / ".." / "shared" / "corpora" / "wikitext-2"


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def cpu_timed(fn):
    """``(out, wall seconds, CPU seconds)``: CPU time is what a busy shared machine disturbs least."""
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - wall, time.process_time() - cpu


def prepare(path: Path) -> list[list[str]]:
    return [["__unk__" if w == "<unk>" else w for w in s] for s in read_sentences(path)]


def build(args, tmp: Path) -> tuple[Path, Path]:
    """The ARPA file and our binary directory of the benchmarked model."""
    binary = Path(args.binary) if args.binary else tmp / "model.bin"
    if args.arpa:
        arpa = Path(args.arpa)
        if not is_binary_model(binary):
            model, _ = read_arpa(arpa)
            save_binary(model, binary)
        return arpa, binary
    train = prepare(Path(args.train) if args.train else CORPUS / "valid.txt")
    vocab = WordVocabulary.from_sentences(train)
    model = estimate_kneser_ney(count_ngrams(vocab.encode(train)[0], args.order, vocab.bos_id, vocab.eos_id,
                                             vocab_size=len(vocab)), unk_id=vocab.unk_id)
    arpa = tmp / "model.arpa"
    write_arpa(model, arpa, vocab.words)
    save_binary(model, binary)
    return arpa, binary


def main() -> None:
    import kenlm

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--order", type=int, default=5)
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--train", help="training text (default: WikiText-2 valid)")
    ap.add_argument("--test", help="text to score (default: WikiText-2 test)")
    ap.add_argument("--arpa", help="an existing ARPA model instead of estimating one")
    ap.add_argument("--binary", help="our binary model directory (written when missing)")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        arpa, binary = build(args, Path(tmp))
        load_times = [timed(lambda: load_binary(binary))[1] for _ in range(5)]
        ours, first = timed(lambda: load_binary(binary))
        theirs, t_kenlm_load = timed(lambda: kenlm.Model(str(arpa)))
        words = [w for w, _ in sorted(_unigram_ids(arpa).items(), key=lambda kv: kv[1])]
        test = prepare(Path(args.test) if args.test else CORPUS / "test.txt")
        vocab = WordVocabulary.from_words(words)
        ids, _ = vocab.encode(test)
        _, t_first = timed(lambda: ours.score(ids))  # first touch of the mapped pages
        lines = [" ".join(s) for s in test]
        runs = {k: ([], []) for k in ("ids", "words", "kenlm")}  # wall, CPU seconds per repeat
        encode = lambda: WordVocabulary.from_words(words).encode(test)[0]  # noqa: E731
        for _ in range(args.repeat):
            for key, fn in (("ids", lambda: ours.score(ids)), ("words", lambda: ours.score(encode())),
                            ("kenlm", lambda: sum(theirs.score(line) for line in lines))):
                out, wall, cpu = cpu_timed(fn)
                runs[key][0].append(wall)
                runs[key][1].append(cpu)
                if key == "ids":
                    lp = out
                elif key == "kenlm":
                    total_k = out
    tokens = ids.size
    sizes = ours.num_ngrams()
    print(f"model: order {ours.order}, {sum(sizes):,} n-grams {sizes}; test {tokens:,} tokens")
    print(f"load: ours (binary, mapped) {statistics.median(load_times) * 1e3:.1f} ms median, first score "
          f"{t_first:.3f} s (page faults); kenlm.Model(arpa) {t_kenlm_load:.2f} s")
    print(f"total log10 prob: ours {lp.sum() / np.log(10):.4f}, kenlm {total_k:.4f}")
    for clock, c in (("wall", 0), ("CPU", 1)):
        med = {k: statistics.median(v[c]) for k, v in runs.items()}
        ratio = {k: statistics.median(np.array(runs["kenlm"][c]) / np.array(runs[k][c])) for k in ("ids", "words")}
        print(f"[{clock}, median of {args.repeat}] ours (ids) {tokens / med['ids'] / 1e6:.2f}, ours (words -> ids) "
              f"{tokens / med['words'] / 1e6:.2f}, kenlm.Model.score (words) {tokens / med['kenlm'] / 1e6:.2f} "
              f"M tokens/s; ours / kenlm per repeat: ids {ratio['ids']:.2f}x, words {ratio['words']:.2f}x")


def _unigram_ids(arpa: Path) -> dict[str, int]:
    """Word -> id in the order of the ARPA unigram section (what read_arpa numbers them by)."""
    ids: dict[str, int] = {}
    with open(arpa, encoding="utf-8") as f:
        for line in f:
            if line.startswith("\\1-grams:"):
                break
        for line in f:
            if not line.strip():
                break
            ids[line.split("\t")[1].strip()] = len(ids)
    return ids


if __name__ == "__main__":
    main()
