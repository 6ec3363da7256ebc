"""Peak RSS of RNN training on 10 MB and 100 MB corpora: memory-mapped windows vs the concatenated int64 path.

Issue 15: the neural stages used to read every split's ids into one array, copy it to int64 for
``batchify`` and hash another int64 copy, so memory grew with the corpus. This script trains the RNN
(``train_rnn``) for a small fixed ``max_steps`` on the train split of each corpus slice, read as the rnn
stage reads it, each run in a child process that reports its peak RSS (``VmHWM``), and does the same with
the library as it was before the data path streamed (``git archive <rev> arcore``: ``read_ids`` + int64
``batchify``), so the two rows differ only by the data path. Validation uses the same first
``VALID_TOKENS`` valid ids in every run (the per-document valid score and ``max_valid_tokens`` are not
what is measured here).

Corpus: the real text of benchmarks/make_scale_corpus.py (Linux kernel sources, ``<data>/<slice>/docs``),
built once into ingest -> tokenizer (BPE 4,096, trained on an 8 MB sample) -> shards under ``--work``
(reused when complete). Training: LSTM 1 x 192 (the default model), batch 16, bptt 32, ``max_steps``
steps (default 50), one epoch, checkpoints off.

    .venv/bin/python benchmarks/neural_data_memory.py [--slices 10mb,100mb] [--steps 50] [--before REV]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if "--child" not in sys.argv:  # a child imports the library its PYTHONPATH names first
    sys.path.insert(0, str(ROOT))


VALID_TOKENS = 20_000  # the same few valid ids in every run: this measures the training data path


def peak_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def prepare(data: Path, work: Path, name: str) -> tuple[Path, Path]:
    """ingest -> tokenizer -> shards of one slice, reused when the shards' manifests are complete."""
    from arcore.ingest.build import build_ingest
    from arcore.ingest.config import IngestConfig
    from arcore.shards.build import build_shards
    from arcore.shards.config import ShardsConfig
    from arcore.tokenize.build import build_tokenizer
    from arcore.tokenize.config import TokenizerConfig

    base = work / name
    tok, shards = base / "tokenizer", base / "shards"
    if all((shards / f"{s}.manifest.json").exists() for s in ("train", "valid", "test")):
        if json.loads((shards / "test.manifest.json").read_text()).get("complete"):
            return tok, shards
    for d in ("ingest", "tokenizer", "shards"):
        (base / d).mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    build_ingest(IngestConfig(inputs=[str(data / name / "docs")]), base / "ingest")
    build_tokenizer(TokenizerConfig(sample_bytes=8 << 20), base / "ingest", tok)
    build_shards(ShardsConfig(), base / "ingest", tok, shards)
    print(f"# built {name} shards in {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    return tok, shards


def child(tok: Path, shards: Path, out: Path, steps: int) -> None:
    """Train as the rnn stage does: the train split from the shards (memory-mapped token file where the
    library has one, else ``read_ids``' concatenation), ``VALID_TOKENS`` valid ids, ``steps`` steps."""
    import torch

    from arcore.rnn.config import RNNConfig
    from arcore.rnn.train import train_rnn
    from arcore.shards.reader import read_ids, split_stats
    from arcore.tokenize.store import load_tokenizer

    torch.set_num_threads(1)
    t0 = time.perf_counter()
    vocab = load_tokenizer(tok).vocab_size
    import arcore

    if (Path(arcore.__file__).parent / "neural" / "data.py").exists():
        from arcore.neural.data import read_split_tokens

        train = read_split_tokens(shards, "train", out / ".data")
    else:  # the library before issue 15
        train = read_ids(shards, "train")
    valid = read_ids(shards, "valid")[:VALID_TOKENS]
    cfg = RNNConfig(epochs=1, max_steps=steps, checkpoint_every=0)
    result = train_rnn(cfg, train, valid, vocab, out)
    print(json.dumps({"peak_rss_mb": peak_rss_mb(), "seconds": time.perf_counter() - t0, "steps": result.steps,
                      "train_tokens": split_stats(shards, "train").tokens, "valid_tokens": len(valid),
                      "valid_loss": result.best_valid_loss}))


def run_child(tok: Path, shards: Path, steps: int, library: Path) -> dict:
    with tempfile.TemporaryDirectory(prefix="neural-mem-") as tmp:
        env = {**os.environ, "PYTHONPATH": str(library), "OMP_NUM_THREADS": "1"}  # that library alone
        cmd = [sys.executable, str(Path(__file__).resolve()), "--child", str(tok), str(shards), tmp, str(steps)]
        (Path(tmp) / ".data").mkdir()
        proc = subprocess.run(cmd, env=env, cwd=tmp, capture_output=True, text=True)
        if proc.returncode:
            raise SystemExit(proc.stderr[-2000:])
        return json.loads(proc.stdout.strip().splitlines()[-1])


def old_library(rev: str, into: Path) -> Path:
    """``arcore`` as it was at ``rev``, unpacked into ``into`` (the child imports it first)."""
    into.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(["git", "archive", rev, "arcore"], cwd=ROOT, capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=Path("/work/scale-data"))
    parser.add_argument("--work", type=Path, default=Path("/work/scale-work/neural-data"))
    parser.add_argument("--slices", default="10mb,100mb")
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--before", default="ab94d4a^", help="git revision of the concatenating data path")
    parser.add_argument("--child", nargs=4, metavar=("TOK", "SHARDS", "OUT", "STEPS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        tok, shards, out, steps = args.child
        child(Path(tok), Path(shards), Path(out), int(steps))
        return
    with tempfile.TemporaryDirectory(prefix="arcore-before-") as tmp:
        before = old_library(args.before, Path(tmp)) if args.before else None
        print("| corpus | train tokens | valid tokens | data path | peak RSS | seconds | steps | valid loss |")
        print("|---|---|---|---|---|---|---|---|")
        for name in args.slices.split(","):
            tok, shards = prepare(args.data, args.work, name)
            runs = [("memory-mapped windows", ROOT)] + ([(f"concatenated int64 ({args.before})", before)] if before else [])
            for label, library in runs:
                r = run_child(tok, shards, args.steps, library)
                print(f"| {name} | {r['train_tokens']:,} | {r['valid_tokens']:,} | {label} | {r['peak_rss_mb']:.0f} MB "
                      f"| {r['seconds']:.1f} | {r['steps']} | {r['valid_loss']:.4f} |", flush=True)


if __name__ == "__main__":
    main()
