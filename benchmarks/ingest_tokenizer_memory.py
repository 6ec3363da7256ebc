"""Peak RSS and seconds of the ingest and tokenizer stages on growing slices of real text (issue 15).

Each stage runs in a child process of its own (``build_ingest`` / ``build_tokenizer`` called directly,
no Prefect or MLflow), and its peak resident set size is the child's ``ru_maxrss`` from ``os.wait4``,
so the figures are per stage and per run, not a maximum over all children. Every size is run
``--runs`` times and the median printed (the machine may be shared).

Corpus: a slice of real text of each size, cut from one source tree in sorted path order (default: the
Linux sources under ../scale-data, else this Python's standard library), written as part files of
``--part-mb`` each; undecodable files are left out. Text only, no copies of one file (ingest drops
duplicates). The tokenizer runs twice per size: with the default ``sample_bytes`` (128 MiB, so up to
that size the whole train split) and with ``--small-sample-mb``, which shows where memory stops growing.

    .venv/bin/python benchmarks/ingest_tokenizer_memory.py --sizes 10,100 --runs 2
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCES = (ROOT.parent / "scale-data" / "src", Path(sysconfig.get_paths()["stdlib"]))
EXTENSIONS = {".c", ".h", ".rst", ".txt", ".py", ".S", ".sh"}


def source_files(source: Path):
    for root, dirs, names in os.walk(source):
        dirs.sort()
        for name in sorted(names):
            path = Path(root) / name
            if path.suffix in EXTENSIONS and not path.is_symlink():
                yield path


def write_slice(source: Path, megabytes: int, part_mb: int, out: Path) -> int:
    """Write about ``megabytes`` MB of text from ``source`` into ``out/part-NNNN.txt``; return bytes."""
    out.mkdir(parents=True, exist_ok=True)
    target, part_target = megabytes * 10**6, part_mb * 10**6
    written, part, part_bytes, f = 0, 0, 0, None
    for path in source_files(source):
        data = path.read_bytes()
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            continue
        data = data[: target - written] if written + len(data) > target else data
        if f is None or part_bytes >= part_target:
            if f is not None:
                f.close()
            f, part_bytes, part = open(out / f"part-{part:04d}.txt", "wb"), 0, part + 1
        f.write(data + b"\n\n")
        written += len(data) + 2
        part_bytes += len(data) + 2
        if written >= target:
            break
    if f is not None:
        f.close()
    return written


def child(stage: str, src: str, out: str, sample_bytes: int) -> None:
    """Runs in the child process: one stage, then its figures as one JSON line."""
    sys.path.insert(0, str(ROOT))
    from arcore.ingest import IngestConfig, build_ingest
    from arcore.tokenize import TokenizerConfig, build_tokenizer

    Path(out).mkdir(parents=True, exist_ok=True)
    if stage == "ingest":
        result = build_ingest(IngestConfig(inputs=[src]), Path(out))
    else:
        result = build_tokenizer(TokenizerConfig(sample_bytes=sample_bytes), Path(src), Path(out))
    print(json.dumps(dict(result.records)))


def measure(stage: str, src: Path, out: Path, sample_bytes: int = 0) -> dict:
    start = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, __file__, "--child", stage, str(src), str(out), str(sample_bytes)],
        stdout=subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    stdout = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    if status != 0:
        raise SystemExit(f"{stage} child failed with status {status}")
    return {"seconds": seconds, "cpu": usage.ru_utime + usage.ru_stime, "rss_mb": usage.ru_maxrss / 1024,
            "records": json.loads(stdout.decode().strip().splitlines()[-1])}


def median_of(runs: list[dict]) -> dict:
    return {k: statistics.median(r[k] for r in runs) for k in ("seconds", "cpu", "rss_mb")} | {"records": runs[0]["records"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="10,100", help="slice sizes in MB, comma separated")
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--part-mb", type=int, default=4)
    ap.add_argument("--small-sample-mb", type=int, default=8)
    ap.add_argument("--source", type=Path, default=next((s for s in SOURCES if s.is_dir()), None))
    ap.add_argument("--work", type=Path, default=None, help="where slices and outputs go (default: a temp dir)")
    ap.add_argument("--stages", default="ingest,tokenizer",
                    help="tokenizer alone reuses the ingest outputs already under --work")
    args = ap.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="arpipe-mem-"))
    print(f"source: {args.source}   work: {work}   runs per figure: {args.runs} (median)")
    header = f"{'MB':>6} {'stage':<27} {'seconds':>8} {'cpu s':>7} {'peak RSS MB':>12}  records"
    print(header)
    small = args.small_sample_mb << 20
    for size in (int(s) for s in args.sizes.split(",")):
        corpus = work / f"slice-{size}"
        if not corpus.is_dir():
            write_slice(args.source, size, args.part_mb, corpus)
        rows = []
        if "ingest" in args.stages:
            ingest_runs = [measure("ingest", corpus, work / f"ingest-{size}-{r}") for r in range(args.runs)]
            rows.append(("ingest", median_of(ingest_runs)))
        ingest_dir = work / f"ingest-{size}-0"
        for label, sample in (("tokenizer (sample 128 MiB)", 128 << 20), (f"tokenizer (sample {args.small_sample_mb} MiB)", small)):
            if "tokenizer" not in args.stages:
                continue
            runs = [measure("tokenizer", ingest_dir, work / f"tok-{size}-{sample}-{r}", sample) for r in range(args.runs)]
            rows.append((label, median_of(runs)))
        for label, m in rows:
            rec = m["records"]
            keep = {k: rec[k] for k in ("documents", "train_bytes", "sample_bytes", "sample_documents") if k in rec}
            print(f"{size:>6} {label:<27} {m['seconds']:>8.1f} {m['cpu']:>7.1f} {m['rss_mb']:>12.0f}  {keep}", flush=True)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]))
    else:
        main()
