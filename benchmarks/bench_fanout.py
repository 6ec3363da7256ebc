"""Fan-out overhead: the two map steps in-process, on a plain Dask cluster, and as Prefect tasks on Dask.

Run: ``.venv/bin/python benchmarks/bench_fanout.py [--repeats 3] [--copies 3] [--batch-documents 256] [--noop 100]``

Corpus: the combined shared corpora (as ``shards_encode.py``) repeated ``--copies`` times, all train; the
default tokenizer (byte-level BPE, 4096) trained on Tiny Shakespeare. Two map steps and a no-op, each run three ways
in this one process, alternating, ``--repeats`` times, on the same inputs:

- shards: ``build_shards`` with ``shard_tokens = 2**20`` (one piece = one batch of documents, an ``EncodeJob``
  carrying the tokenizer JSON);
- n-grams: ``count_ngrams`` of order 5 over the train ids, cut at the shard boundaries as the ngram stage
  cuts them (one piece = one chunk of about 1 M tokens; its sorted runs come back to this process);
- no-op: ``abs`` over ``range(--noop)``, the fixed cost of one piece on each path.

(a) ``mapper=None``; (b) a ``distributed.LocalCluster`` of 2 single-threaded worker processes with the
ordered, bounded-window mapper below on ``client.submit``; (c) the pipeline's own path,
``tasks.fanout.FanOut(...).mapper``: one Prefect task run per piece through prefect-dask, inside a flow run
(API: ``prefect_test_harness``, PREFECT_HOME in a temporary directory). Cluster start-up is timed apart
and excluded. Prints medians, the ratios (b)/(a) and (c)/(a), the extra seconds per piece, and whether
shard bytes (sha256) and count arrays are identical across (a), (b) and (c).
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile

# Before prefect is imported; not in Dask's spawned workers, which import this script as __mp_main__.
if __name__ == "__main__":
    os.environ.update(PREFECT_HOME=tempfile.mkdtemp(prefix="bench-fanout-prefect-"), PREFECT_LOGGING_LEVEL="WARNING",
                      PREFECT_SERVER_ANALYTICS_ENABLED="false", DASK_LOGGING__DISTRIBUTED="warning")
    os.environ.pop("PREFECT_API_URL", None)

import argparse  # noqa: E402
import logging  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from collections import deque  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from arcore.config import RunnerSpec  # noqa: E402
from arcore.io import sha256_file  # noqa: E402
from arcore.ngram.counts import count_ngrams  # noqa: E402
from arcore.shards import ShardsConfig, build_shards, read_manifest  # noqa: E402
from arcore.shards.reader import read_ids  # noqa: E402
from arcore.tokenize import TokenizerConfig, build_tokenizer, load_tokenizer  # noqa: E402
from benchmarks.shards_encode import CORPORA, corpus_documents, write_ingest  # noqa: E402
from prefect import flow  # noqa: E402

KINDS = ("a in-process", "b dask", "c prefect-dask")
JOB: dict = {}  # the call fanout_flow runs


@flow(name="bench-fanout", persist_result=False)
def fanout_flow():
    """``JOB["run"]()`` inside a flow run, so the fan-out's task runs have a parent, as in the pipeline.

    Every piece ships this flow to its worker (Prefect's serialized context) and cloudpickle copies a
    script's functions by value with the globals they name, here a Dask client: so no global by name."""
    return vars(sys.modules[__name__])["JOB"]["run"]()


def dask_mapper(client, window: int, tally: list):
    """``mapper(fn, items)`` on ``client.submit``: in order, at most ``window`` pieces in flight."""

    def run(fn, items):
        pending: deque = deque()
        for item in items:
            tally.append(1)
            pending.append(client.submit(fn, item, pure=False))
            if len(pending) >= window:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()

    return run


def timed(job, mapper):
    start = time.perf_counter()
    out = job(mapper)
    return time.perf_counter() - start, out


def shard_digests(out: Path) -> list[tuple[str, str]]:
    return [(s.file, sha256_file(out / s.file)) for s in read_manifest(out, "train").shards]


def same_counts(x, y) -> bool:
    return all(np.array_equal(a, b) for a, b in zip(x.ngrams + x.counts, y.ngrams + y.counts))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--copies", type=int, default=3)
    parser.add_argument("--batch-documents", type=int, default=256)
    parser.add_argument("--noop", type=int, default=100, help="pieces of the do-nothing map")
    args = parser.parse_args()

    from distributed import Client, LocalCluster
    from prefect.testing.utilities import prefect_test_harness

    from tasks.fanout import FanOut

    with tempfile.TemporaryDirectory() as tmp, prefect_test_harness(server_startup_timeout=180):
        root = Path(tmp)
        shakespeare = [p for p in (CORPORA / "tinyshakespeare" / "input.txt").read_text().split("\n\n") if p.strip()]
        tok = root / "tok"
        tok.mkdir()
        build_tokenizer(TokenizerConfig(), write_ingest(root / "ts", shakespeare, 1), tok)
        loaded = load_tokenizer(tok)
        docs = corpus_documents()
        ingest = write_ingest(root / "ingest", docs, args.copies)
        mb = sum(len(d.encode("utf-8")) for d in docs) * args.copies / 1e6
        cfg = ShardsConfig(shard_tokens=1 << 20, batch_documents=args.batch_documents)

        start = time.perf_counter()
        cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                               dashboard_address="127.0.0.1:0", silence_logs=logging.WARNING,
                               env={"TOKENIZERS_PARALLELISM": "false"})
        client = Client(cluster, set_as_default=False)  # else FanOut's DaskTaskRunner would attach to it
        client.wait_for_workers(2)
        startup = {"b dask": time.perf_counter() - start}
        start = time.perf_counter()
        fan = FanOut(RunnerSpec(dask=True), workers=2)
        fan.runner()  # starts its LocalCluster (scheduler here, 2 worker processes reporting to the API)
        startup["c prefect-dask"] = time.perf_counter() - start
        tally: list = []

        def run(kind: str, stage: str, step: str, job):
            if kind == "a in-process":
                return timed(job, None)
            if kind == "b dask":
                tally.clear()
                out = timed(job, dask_mapper(client, 2 * len(client.nthreads()), tally))  # FanOut's window
                pieces[step] = len(tally)
                return out
            JOB["run"] = lambda: timed(job, fan.mapper(stage, step))
            return fanout_flow()

        seconds = {(step, k): [] for step in ("encode", "count", "noop") for k in KINDS}
        pieces: dict[str, int] = {}
        digests: dict[str, list] = {}
        for r in range(args.repeats):
            for kind in KINDS:
                out = root / f"shards-{r}-{kind[0]}"
                out.mkdir()
                secs, _ = run(kind, "shards", "encode", lambda m: build_shards(cfg, ingest, tok, out, mapper=m))
                seconds["encode", kind].append(secs)
                digests.setdefault(kind, shard_digests(out))
                if r or kind != "a in-process":
                    shutil.rmtree(out)
        shards_dir = root / "shards-0-a"
        ids = read_ids(shards_dir, "train", loaded.sha256)
        cuts = np.cumsum([s.tokens for s in read_manifest(shards_dir, "train").shards])[:-1]
        counts = {}
        for r in range(args.repeats):
            for kind in KINDS:
                secs, result = run(kind, "ngram", "count", lambda m: count_ngrams(
                    ids, 5, loaded.bos_id, loaded.eos_id, vocab_size=loaded.vocab_size, cuts=cuts, mapper=m))
                seconds["count", kind].append(secs)
                counts.setdefault(kind, result)
        for r in range(args.repeats):  # the fixed cost of a piece: pieces that do nothing
            for kind in KINDS:
                secs, _ = run(kind, "bench", "noop", lambda m: list((m or map)(abs, range(args.noop))))
                seconds["noop", kind].append(secs)
        client.close()
        cluster.close()
        fan.close()

    shutil.rmtree(os.environ["PREFECT_HOME"], ignore_errors=True)
    print(f"machine: {os.cpu_count()} cores; cluster start-up (excluded below): "
          + ", ".join(f"{k} {v:.1f} s" for k, v in startup.items()))
    print(f"corpus: {len(docs) * args.copies} documents ({args.copies} copies), {mb:.2f} MB UTF-8, "
          f"{ids.size:,} train tokens in {len(cuts) + 1} shards; medians of {args.repeats} alternating runs")
    for step, what in (("encode", f"build_shards, batch_documents={args.batch_documents}"),
                       ("count", "count_ngrams order 5, cut at shards"), ("noop", "abs(i): cost of a piece")):
        med = {k: statistics.median(seconds[step, k]) for k in KINDS}
        n = pieces[step]
        print(f"{step} ({what}; {n} pieces):")
        for k in KINDS:
            runs = " ".join(f"{s:.2f}" for s in seconds[step, k])
            ratio = f"  ratio to (a) {med[k] / med[KINDS[0]]:5.2f}" if step != "noop" else ""
            print(f"  {k:15s} median {med[k]:7.2f} s  (runs {runs}){ratio}")
        print(f"  extra per piece: (b)-(a) {(med[KINDS[1]] - med[KINDS[0]]) / n * 1e3:7.1f} ms, "
              f"(c)-(a) {(med[KINDS[2]] - med[KINDS[0]]) / n * 1e3:7.1f} ms, "
              f"(c)-(b) {(med[KINDS[2]] - med[KINDS[1]]) / n * 1e3:7.1f} ms")
    same_shards = digests[KINDS[0]] == digests[KINDS[1]] == digests[KINDS[2]]
    same = same_counts(counts[KINDS[0]], counts[KINDS[1]]) and same_counts(counts[KINDS[0]], counts[KINDS[2]])
    print(f"identical outputs: shard sha256 {same_shards} ({len(digests[KINDS[0]])} shards), "
          f"n-gram count arrays {same} ({counts[KINDS[0]].num_ngrams()} n-grams)")
    if not (same_shards and same):
        sys.exit("outputs differ across mappers")


if __name__ == "__main__":
    main()
