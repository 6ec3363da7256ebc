"""CPU seconds and peak RSS of each streamed estimator's passes over count tables on disk (issue 15).

    python benchmarks/ngram_streamed_estimators.py --text /work/scale-data/100mb/words.txt --work /tmp/sbench

Once: the text is encoded to ids (``encode_training_text``), the last ~200 k ids (whole sentences) kept
apart as the held-out split, the rest counted (``corpus_count`` + ``adjust_counts``, order 5) at the budget.
Then every estimator runs in its own child process on the same tables: ``--writer null`` hands the orders
to a writer that drops them (the passes alone), ``--writer binary`` writes the binary model with its probing
tables (what ``fit_ngram_models`` does), ``--writer in-memory`` is the stage before 9b372bf: the tables
loaded into an ``NGramIndex`` and the in-memory estimator run on it. Each child reports CPU (user + sys)
of the estimation alone and its peak RSS (``VmHWM``: ``ru_maxrss`` would keep the forking parent's peak).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ESTIMATORS = ("mle", "add-k", "katz", "interpolated", "kneser-ney")

CHILD = r"""
import json, sys, time, shutil
from pathlib import Path
import numpy as np
from arcore.ngram.corpus_count import CountTables
from arcore.ngram.diskarray import working_budget
from arcore.ngram.binary import BinaryModelWriter

def hwm_mb():
    return int(next(l for l in open("/proc/self/status") if l.startswith("VmHWM:")).split()[1]) / 1024

class NullWriter:
    rows = 0
    def append(self, n, keys, logprob, logbackoff):
        NullWriter.rows += len(logprob)
    def close(self, info=None):
        return info

name, tables_dir, valid_path, budget_mb, kind, work = sys.argv[1:7]
tables = CountTables.load(Path(tables_dir))
valid = np.load(valid_path)
budget = working_budget(int(budget_mb) << 20)
before = hwm_mb()
work = Path(work)
shutil.rmtree(work, ignore_errors=True)
writer = (NullWriter() if kind in ("null", "in-memory") else
          BinaryModelWriter(work / "model", name=name, order=tables.order, vocab_size=tables.vocab_size,
                            bos_id=tables.bos_id, eos_id=tables.eos_id, unk_id=0, memory_budget_bytes=budget))
t0, w0 = time.process_time(), time.time()
scratch = work / "passes"
if kind == "in-memory":
    from arcore.ngram.fit import estimate
    from arcore.ngram.index import NGramIndex
    V = tables.vocab_size
    keys, counts = [np.arange(V, dtype=np.int64)], [tables.unigram_counts()]
    prefix, suffix = [np.zeros(0, dtype=np.int64)], [np.zeros(0, dtype=np.int64)]
    for n in range(2, tables.order + 1):
        keys.append(np.load(tables.path(n, "keys")))
        counts.append(np.load(tables.path(n, "counts")))
        prefix.append(keys[-1] // V)
        suffix.append(np.load(tables.path(n, "suffix")))
    index = NGramIndex(tables.order, V, tables.bos_id, tables.eos_id, tuple(keys), tuple(counts), tuple(prefix),
                       tuple(suffix))
    model = estimate(name, index, valid_ids=valid, unk_id=0, add_k=0.5, discount_fallback=(0.5, 1.0, 1.5))
    info = None
elif name == "mle":
    from arcore.ngram.additive import stream_mle
    info = stream_mle(tables, writer, scratch, budget)
elif name == "add-k":
    from arcore.ngram.additive import stream_add_k
    info = stream_add_k(tables, writer, scratch, budget, 0.5)
elif name == "katz":
    from arcore.ngram.katz import stream_katz
    info = stream_katz(tables, writer, scratch, budget, 5)
elif name == "interpolated":
    from arcore.ngram.interpolation import stream_interpolated
    info = stream_interpolated(tables, valid, writer, scratch, budget)
else:
    from arcore.ngram.adjust_counts import counts_of_counts
    from arcore.ngram.interpolate import interpolate_kneser_ney
    from arcore.ngram.kneser_ney import discounts_from_counts_of_counts
    coc = [counts_of_counts(tables, n, budget) for n in range(1, tables.order + 1)]
    info = interpolate_kneser_ney(tables, discounts_from_counts_of_counts(coc, (0.5, 1.0, 1.5)), writer,
                                  scratch, budget)
cpu, wall = time.process_time() - t0, time.time() - w0
shutil.rmtree(work, ignore_errors=True)
print(json.dumps({"name": name, "writer": kind, "cpu_s": round(cpu, 1), "wall_s": round(wall, 1),
                  "peak_mb": round(hwm_mb()), "before_mb": round(before),
                  "info": info if kind == "null" and name in ("interpolated", "add-k") else None}))
"""


def prepare(text: Path, work: Path, budget_mb: int, order: int = 5) -> dict:
    from arcore.ngram.adjust_counts import adjust_counts
    from arcore.ngram.corpus_count import corpus_count
    from arcore.ngram.diskarray import NpyFile, write_npy
    from arcore.ngram.text import documents_of, encode_training_text

    work.mkdir(parents=True, exist_ok=True)
    vocab, _ = encode_training_text(text, work / "all.npy")
    ids = np.load(work / "all.npy", mmap_mode="r")
    tail = np.asarray(ids[-200_000:])
    cut = len(ids) - tail.size + int(np.flatnonzero(tail == vocab.eos_id)[0]) + 1
    write_npy(work / "train.npy", np.asarray(ids[:cut]))
    write_npy(work / "valid.npy", np.asarray(ids[cut:]).astype(np.int64))
    del ids
    (work / "all.npy").unlink()
    budget = budget_mb << 20
    t0 = time.process_time()
    tables = corpus_count(documents_of(NpyFile(work / "train.npy"), vocab.eos_id, 1 << 22), order, len(vocab),
                          vocab.bos_id, vocab.eos_id, work / "tables", memory_budget_bytes=budget)
    adjust_counts(tables, budget)
    return {"vocab": len(vocab), "train_ids": cut, "num_ngrams": tables.num_ngrams,
            "count_cpu_s": round(time.process_time() - t0, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--text", type=Path, default=Path("/work/scale-data/100mb/words.txt"))
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--budget-mb", type=int, default=1024)
    ap.add_argument("--writer", choices=("null", "binary", "in-memory"), nargs="+", default=["null", "binary"])
    ap.add_argument("--estimators", nargs="+", choices=ESTIMATORS, default=list(ESTIMATORS))
    args = ap.parse_args()
    if not (args.work / "tables" / "tables.json").exists():
        print(json.dumps(prepare(args.text, args.work, args.budget_mb)), flush=True)
    for kind in args.writer:
        for name in args.estimators:
            proc = subprocess.run([sys.executable, "-c", CHILD, name, str(args.work / "tables"),
                                   str(args.work / "valid.npy"), str(args.budget_mb), kind,
                                   str(args.work / f"run-{name}")], capture_output=True, text=True)
            if proc.returncode:
                sys.exit(proc.stderr[-3000:])
            print(proc.stdout.strip().splitlines()[-1], flush=True)
    shutil.rmtree(args.work / "run", ignore_errors=True)


if __name__ == "__main__":
    main()
