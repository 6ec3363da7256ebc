"""N-gram counting out of core: the stage's numpy passes (``corpus_count``) against DuckDB under one memory limit.

Issue 15 allowed a well-kept out-of-core library as the sorter if it is fast; this measures the candidate
that is installed here (DuckDB; Polars is not) on the same job: every n-gram of orders 2..N of a shards
split counted, sorted, and written to disk, with the memory limit the stage gets.

In: a shards directory and its tokenizer (e.g. ``/work/scale-work/100mb/{shards,tokenizer}/<key>``, what
``benchmarks/scale.py pipeline`` leaves). Out: one markdown table on stdout: per side and repeat, CPU
seconds (user + sys of the child, DuckDB's threads included), wall seconds, peak RSS (the child's
``ru_maxrss``, measured inside it), distinct n-grams per order (which must agree), and the medians' ratios.

Each side runs in its own child process (``--side``), the two interleaved per repeat:

- numpy: ``arcore.ngram.corpus_count`` over the shard stream (sort of packed windows per partition,
  partitions planned from the unigram counts, tables as ``.npy`` keys and counts).
- duckdb: the same windows (``corpus_count.windows``: the ``<s>``-extended stream, N columns) streamed into
  an on-disk DuckDB table, then per order ``COPY (SELECT w1..wn, count(*) ... WHERE w2..wn <> <s> GROUP BY
  ALL ORDER BY ALL) TO order{n}.parquet``, with ``memory_limit`` = the budget, ``threads`` = 2 and a
  ``temp_directory`` to spill to: the sorted tables the estimators need.

    .venv/bin/python benchmarks/ngram_counting_duckdb.py --shards DIR --tokenizer DIR [--budget-mb 2048] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _numpy(shards: Path, tok, order: int, budget: int, work: Path) -> list[int]:
    from arcore.ngram.corpus_count import corpus_count
    from arcore.ngram.heap import reuse_freed_memory
    from arcore.shards.reader import iter_shard_ids

    def stream():
        return iter_shard_ids(shards, "train", tok.sha256, verify=False)

    with reuse_freed_memory():  # as fit_ngram_models runs it
        tables = corpus_count(stream, order, tok.vocab_size, tok.bos_id, tok.eos_id, work / "tables",
                              memory_budget_bytes=budget)
    return [int(x) for x in tables.num_ngrams[1:]]


def _duckdb(shards: Path, tok, order: int, budget: int, work: Path) -> list[int]:
    import duckdb
    import numpy as np
    import pyarrow as pa

    from arcore.ngram.corpus_count import windows
    from arcore.shards.reader import iter_shard_ids

    con = duckdb.connect(str(work / "counts.duckdb"))
    con.execute(f"SET memory_limit = '{budget >> 20}MB'")
    con.execute("SET threads = 2")
    con.execute(f"SET temp_directory = '{work / 'spill'}'")
    cols = [f"w{j + 1}" for j in range(order)]
    schema = pa.schema([(c, pa.uint16() if tok.vocab_size <= 1 << 16 else pa.uint32()) for c in cols])
    dtype = np.uint16 if tok.vocab_size <= 1 << 16 else np.uint32

    def batches():
        for ids in iter_shard_ids(shards, "train", tok.sha256, verify=False):
            w = windows(np.asarray(ids), order, tok.bos_id, tok.eos_id, dtype)
            yield pa.record_batch([pa.array(w[:, j]) for j in range(order)], schema=schema)

    reader = pa.RecordBatchReader.from_batches(schema, batches())
    con.register("stream", reader)
    con.execute("CREATE TABLE win AS SELECT * FROM stream")
    counts = []
    for n in range(2, order + 1):
        keep = " AND ".join(f"w{j + 1} <> {tok.bos_id}" for j in range(1, n))  # no n-gram crosses a document
        out = work / f"order{n}.parquet"
        con.execute(f"COPY (SELECT {', '.join(cols[:n])}, count(*) AS count FROM win WHERE {keep} "
                    f"GROUP BY ALL ORDER BY ALL) TO '{out}' (FORMAT parquet)")
        counts.append(con.execute(f"SELECT count(*) FROM '{out}'").fetchone()[0])
    con.close()
    return [int(c) for c in counts]


def child(side: str, shards: Path, tokenizer: Path, order: int, budget_mb: int) -> None:
    from arcore.tokenize.store import load_tokenizer

    tok = load_tokenizer(tokenizer)
    work = Path(tempfile.mkdtemp(prefix=f"count-{side}-", dir=os.environ.get("BENCH_TMP")))
    try:
        t0 = time.perf_counter()
        counts = (_numpy if side == "numpy" else _duckdb)(shards, tok, order, budget_mb << 20, work)
        wall = time.perf_counter() - t0
    finally:
        shutil.rmtree(work, ignore_errors=True)
    me = resource.getrusage(resource.RUSAGE_SELF)  # every thread of this process (DuckDB's too)
    print(json.dumps({"wall_s": wall, "ngrams": counts, "cpu_s": me.ru_utime + me.ru_stime,
                      "rss_mb": me.ru_maxrss / 1024}))


def run_side(side: str, args) -> dict:
    cmd = [sys.executable, __file__, "--side", side, "--shards", str(args.shards), "--tokenizer",
           str(args.tokenizer), "--order", str(args.order), "--budget-mb", str(args.budget_mb)]
    p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if p.returncode != 0:
        raise SystemExit(f"{side} failed (rc {p.returncode}): {p.stderr[-2000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shards", type=Path, required=True)
    ap.add_argument("--tokenizer", type=Path, required=True)
    ap.add_argument("--order", type=int, default=5)
    ap.add_argument("--budget-mb", type=int, default=2048)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--side", choices=["numpy", "duckdb"], default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.side:
        child(args.side, args.shards, args.tokenizer, args.order, args.budget_mb)
        return
    rows = {"numpy": [], "duckdb": []}
    for r in range(args.repeat):
        for side in ("numpy", "duckdb") if r % 2 == 0 else ("duckdb", "numpy"):
            got = run_side(side, args)
            rows[side].append(got)
            print(f"repeat {r} {side}: cpu {got['cpu_s']:.1f} s, wall {got['wall_s']:.1f} s, peak "
                  f"{got['rss_mb']:.0f} MB, n-grams {got['ngrams']}", file=sys.stderr)
    assert rows["numpy"][0]["ngrams"] == rows["duckdb"][0]["ngrams"], (rows["numpy"][0], rows["duckdb"][0])
    med = {s: {k: statistics.median(x[k] for x in rows[s]) for k in ("cpu_s", "wall_s", "rss_mb")} for s in rows}
    print(f"order {args.order}, budget {args.budget_mb} MB, distinct n-grams per order 2..{args.order}: "
          f"{rows['numpy'][0]['ngrams']} (equal on both sides)\n")
    print("| side | CPU s (median) | wall s (median) | peak RSS MB (median) | runs |")
    print("|---|---|---|---|---|")
    for s in rows:
        print(f"| {s} | {med[s]['cpu_s']:.1f} | {med[s]['wall_s']:.1f} | {med[s]['rss_mb']:.0f} | {len(rows[s])} |")
    print(f"\nduckdb / numpy: CPU {med['duckdb']['cpu_s'] / med['numpy']['cpu_s']:.2f}x, "
          f"wall {med['duckdb']['wall_s'] / med['numpy']['wall_s']:.2f}x")


if __name__ == "__main__":
    main()
