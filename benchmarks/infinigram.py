"""The infini-gram index at scale: build time and peak RSS at 1 / 10 / 100 MB of token ids, query latency,
libdivsufsort against a numpy prefix-doubling baseline, and the infini-gram's held-out bits per byte beside
a 5-gram Kneser-Ney model on the same tokens.

Token ids: real text, the Linux 6.1 sources of ``benchmarks/make_scale_corpus.py`` (its ``100mb`` slice and
its ``heldout`` documents), tokenized by a byte-level BPE of 4,096 tokens trained on the slice's first
10 MB (the pipeline's default tokenizer kind and size). Sizes are of the id array as the index stores it
(uint16): 1 MB = 0.5 M tokens, 10 MB = 5 M, 100 MB = 50 M (about 1.5x that in text bytes), each a prefix
of whole documents. Every build runs in its own process; its peak RSS is ``wait4``'s ``ru_maxrss`` of that
process (the id prefix itself, memory-mapped, included).

    .venv/bin/python benchmarks/infinigram.py [--data-dir /work/scale-data] [--sizes-mb 1,10,100]
        [--baseline-mb 1] [--kn-mb 1,10,100]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
BOS, EOS = 1, 2
VOCAB = 4096
HELDOUT_TOKENS = 300_000


def _docs(folder: Path):
    for part in sorted(folder.glob("part-*.jsonl")):
        with part.open(encoding="utf-8") as f:
            for line in f:
                yield json.loads(line)["text"]


def prepare(data_dir: Path, cache: Path, max_tokens: int) -> None:
    """Train the BPE, encode the slice to ``max_tokens`` ids (whole documents) and the held-out set."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    cache.mkdir(parents=True, exist_ok=True)
    if (cache / "train_ids.npy").is_file():
        return
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()

    def sample(limit=10_000_000):
        size = 0
        for text in _docs(data_dir / "100mb" / "docs"):
            yield text
            size += len(text)
            if size > limit:
                return

    tok.train_from_iterator(sample(), trainers.BpeTrainer(
        vocab_size=VOCAB, special_tokens=["<unk>", "<s>", "</s>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tok.save(str(cache / "tokenizer.json"))
    out = np.empty(max_tokens, dtype=np.uint16)
    n, batch, text_bytes = 0, [], 0
    for text in _docs(data_dir / "100mb" / "docs"):
        batch.append(text)
        if len(batch) == 256:
            for e, t in zip(tok.encode_batch(batch), batch):
                ids = e.ids + [EOS]
                if n + len(ids) > max_tokens:
                    break
                out[n:n + len(ids)] = ids
                n += len(ids)
                text_bytes += len(t.encode("utf-8")) + 1
            else:
                batch = []
                continue
            break
    np.save(cache / "train_ids.npy", out[:n])
    held, held_bytes, held_docs = [], 0, 0
    for text in _docs(data_dir / "heldout" / "docs"):
        ids = tok.encode(text).ids + [EOS]
        if sum(map(len, held)) + len(ids) > HELDOUT_TOKENS:
            break
        held.append(ids)
        held_bytes += len(text.encode("utf-8")) + 1
        held_docs += 1
    np.save(cache / "heldout_ids.npy", np.concatenate(held).astype(np.uint16))
    (cache / "meta.json").write_text(json.dumps({"train_tokens": n, "train_text_bytes": text_bytes,
                                                 "heldout_source_bytes": held_bytes, "heldout_documents": held_docs}))


def _prefix(ids: np.ndarray, mb: float) -> np.ndarray:
    """The longest prefix of whole documents within ``mb`` MB of uint16 ids."""
    limit = int(mb * 1e6) // 2
    ends = np.flatnonzero(ids[:limit] == EOS)
    return ids[:ends[-1] + 1]


# -- child processes -----------------------------------------------------------------------------------------


def child_build(cache: Path, mb: float, out: Path, method: str) -> dict:
    from arcore.infinigram.index import REVERSED_IDS, SUFFIX_ARRAY, write_reversed_stream, write_suffix_array
    from arcore.infinigram.suffix_array import prefix_doubling_suffix_array

    ids = _prefix(np.load(cache / "train_ids.npy", mmap_mode="r"), mb)
    documents = int(np.count_nonzero(ids == EOS))
    t0 = time.perf_counter()
    chunks = (ids[i:i + (1 << 22)] for i in range(0, ids.size, 1 << 22))
    n = write_reversed_stream(chunks, ids.size, documents, VOCAB, BOS, EOS, out / REVERSED_IDS)
    t1 = time.perf_counter()
    if method == "divsufsort":
        write_suffix_array(out / REVERSED_IDS, out / SUFFIX_ARRAY)
    else:
        sa = prefix_doubling_suffix_array(np.load(out / REVERSED_IDS))
        np.save(out / SUFFIX_ARRAY, sa.astype(np.int32))
    t2 = time.perf_counter()
    return {"tokens": int(ids.size), "stream_tokens": n, "documents": documents, "stream_s": t1 - t0,
            "suffix_array_s": t2 - t1, "index_bytes": sum(f.stat().st_size for f in out.iterdir())}


def child_query(cache: Path, out: Path) -> dict:
    from arcore.infinigram.index import SuffixIndex
    from arcore.infinigram.model import InfiniGramModel
    from arcore.infinigram.stage import fit_weights
    from arcore.ngram.histogram import UnigramModel

    index = SuffixIndex.open(out, VOCAB)
    fallback = UnigramModel.from_counts(index.token_counts(), BOS, EOS, 1.0)
    model = InfiniGramModel(index, VOCAB, BOS, EOS, 256, fallback, np.full(16, 0.5), 8)
    held = np.load(cache / "heldout_ids.npy").astype(np.int64)
    ends = np.flatnonzero(held == EOS)
    half = int(ends[len(ends) // 2]) + 1  # fit the weights on the first half of the held-out documents
    import dataclasses

    model = dataclasses.replace(model, weights=fit_weights(model, model.estimates(held[:half]), 200))
    t0 = time.perf_counter()
    logprob = model.score(held[half:])
    score_s = time.perf_counter() - t0
    np.save(out / "fit_logprob.npy", model.score(held[:half]))  # for the KN-5 + infinigram mixture
    np.save(out / "eval_logprob.npy", logprob)
    e = model.estimates(held[half:])
    contexts = [np.concatenate([[BOS], held[half:half + k]]) for k in range(1, 201)]
    t1 = time.perf_counter()
    for c in contexts:
        model.next_logprobs([c[-256:]])
    step_s = (time.perf_counter() - t1) / len(contexts)
    return {"scored_tokens": int(held.size - half), "score_us_per_token": 1e6 * score_s / (held.size - half),
            "next_logprobs_ms": 1e3 * step_s, "heldout_nll": float(-logprob.sum()),
            "sparse_fraction": float(e.sparse.mean()), "mean_effective_n": float((e.matched + 1).mean())}


def child_kn(cache: Path, mb: float, out: Path) -> dict:
    """Modified Kneser-Ney, order 5, by the n-gram stage's own out-of-core path (1 GB budget)."""
    from arcore.ngram.fit import NGramConfig, fit_ngram_models

    ids = _prefix(np.load(cache / "train_ids.npy", mmap_mode="r"), mb)
    held = np.load(cache / "heldout_ids.npy").astype(np.int64)
    ends = np.flatnonzero(held == EOS)
    half = int(ends[len(ends) // 2]) + 1
    cuts = np.flatnonzero(ids == EOS)[::4096] + 1  # whole documents per piece, as the shards hold them
    cfg = NGramConfig(order=5, models=["kneser-ney"], memory_budget_mb=1024, count_tables=False, arpa="none")
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="kn-bench-", dir=cache) as tmp:
        model = fit_ngram_models(cfg, lambda: np.split(ids, cuts), held[:half], VOCAB, BOS, EOS, 0,
                                 Path(tmp))["kneser-ney"]
        seconds = time.perf_counter() - t0
        logprob = model.score(held[half:])
        np.save(out / "kn_fit_logprob.npy", model.score(held[:half]))
        np.save(out / "kn_eval_logprob.npy", logprob)
    return {"kn5_seconds": seconds, "heldout_nll": float(-logprob.sum())}


def run_child(args: list[str]) -> tuple[dict, float]:
    """Run this file as a child with ``args``; returns its JSON answer and its peak RSS in GB."""
    proc = subprocess.Popen([sys.executable, __file__, "--child", *args], stdout=subprocess.PIPE, cwd=ROOT)
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    if status != 0:
        raise SystemExit(f"child {args} failed with status {status}")
    return json.loads(out), usage.ru_maxrss / 2**20


def mixture(tmp: Path, held_bytes: int) -> dict:
    """KN-5 + infinigram, linear mixture with EM weights fit on the first half of the held-out documents
    (what evaluate does on the valid split), scored on the second half."""
    from arcore.mixture import fit_mixture_weights

    fit = np.exp(np.stack([np.load(tmp / "kn_fit_logprob.npy"), np.load(tmp / "fit_logprob.npy")], axis=1))
    ev = np.exp(np.stack([np.load(tmp / "kn_eval_logprob.npy"), np.load(tmp / "eval_logprob.npy")], axis=1))
    w = fit_mixture_weights(fit)
    return {"mix_weights": [float(x) for x in w],
            "mix_bpb": float(-np.log(ev @ w).sum() / (math.log(2) * held_bytes))}


def heldout_bytes(cache: Path) -> int:
    """Source bytes of the second half of the held-out documents (what the nll figures cover)."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(cache / "tokenizer.json"))
    held = np.load(cache / "heldout_ids.npy").astype(np.int64)
    docs = np.split(held, np.flatnonzero(held == EOS)[:-1] + 1)
    return sum(len(tok.decode(d[:-1].tolist()).encode("utf-8")) + 1 for d in docs[len(docs) // 2 + 1:])


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--data-dir", type=Path, default=Path("/work/scale-data"))
    p.add_argument("--sizes-mb", default="1,10,100")
    p.add_argument("--baseline-mb", default="1")
    p.add_argument("--kn-mb", default="1,10,100")
    p.add_argument("--child", nargs="*")
    a = p.parse_args()
    cache = a.data_dir / "infinigram"
    if a.child:
        kind, *rest = a.child
        if kind == "build":
            print(json.dumps(child_build(cache, float(rest[0]), Path(rest[1]), rest[2])))
        elif kind == "query":
            print(json.dumps(child_query(cache, Path(rest[0]))))
        else:
            print(json.dumps(child_kn(cache, float(rest[0]), Path(rest[1]))))
        return
    sizes = [float(s) for s in a.sizes_mb.split(",")]
    t0 = time.perf_counter()
    prepare(a.data_dir, cache, int(max(sizes) * 1e6) // 2)
    print(f"prepared token ids in {time.perf_counter() - t0:.0f} s: {json.loads((cache / 'meta.json').read_text())}")
    held_bytes = heldout_bytes(cache)
    rows = []
    for mb in sizes:
        with tempfile.TemporaryDirectory(prefix="infinigram-bench-", dir=a.data_dir) as tmp:
            build, rss = run_child(["build", str(mb), tmp, "divsufsort"])
            query, qrss = run_child(["query", tmp])
            row = {"mb": mb, **build, "build_peak_rss_gb": rss, **query, "query_peak_rss_gb": qrss,
                   "bpb": query["heldout_nll"] / (math.log(2) * held_bytes)}
            if str(mb).rstrip("0").rstrip(".") in a.baseline_mb.split(","):
                base, brss = run_child(["build", str(mb), tmp, "numpy"])
                row.update(numpy_suffix_array_s=base["suffix_array_s"], numpy_peak_rss_gb=brss)
            if str(mb).rstrip("0").rstrip(".") in a.kn_mb.split(","):
                kn, krss = run_child(["kn", str(mb), tmp])
                row.update(kn5_bpb=kn["heldout_nll"] / (math.log(2) * held_bytes), kn5_seconds=kn["kn5_seconds"],
                           kn5_peak_rss_gb=krss, **mixture(Path(tmp), held_bytes))
        rows.append(row)
        print(json.dumps(row), flush=True)
    print("\n| ids (uint16) | tokens | stream s | suffix array s | build peak RSS | index on disk | numpy baseline s (RSS) "
          "| score us/token | next_logprobs ms | held-out bpb | KN-5 bpb | KN-5 + infinigram bpb (weights) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        base = (f"{r['numpy_suffix_array_s']:.1f} ({r['numpy_peak_rss_gb']:.2f} GB)"
                if "numpy_suffix_array_s" in r else "-")
        kn = f"{r['kn5_bpb']:.3f}" if "kn5_bpb" in r else "-"
        mix = f"{r['mix_bpb']:.3f} ({r['mix_weights'][0]:.2f} / {r['mix_weights'][1]:.2f})" if "mix_bpb" in r else "-"
        print(f"| {2 * r['tokens'] / 1e6:.0f} MB | {r['tokens'] / 1e6:.1f} M | {r['stream_s']:.1f} | {r['suffix_array_s']:.1f} | "
              f"{r['build_peak_rss_gb']:.2f} GB | {r['index_bytes'] / 1e6:.0f} MB | {base} | "
              f"{r['score_us_per_token']:.1f} | {r['next_logprobs_ms']:.2f} | {r['bpb']:.3f} | {kn} | {mix} |")


if __name__ == "__main__":
    main()
