"""Scale benchmark of issue 15: every stage on a 10 MB / 100 MB / 1 GB slice, and the n-gram stage beside lmplz.

In: a slice of the corpus that ``benchmarks/make_scale_corpus.py`` writes (default /work/scale-data), and
optionally KenLM's ``lmplz`` (on PATH, or ``--lmplz``; pip's kenlm does not ship it). Out: a markdown
table on stdout and ``scale-<slice>.json`` (``--out``) with, per stage: wall seconds, CPU seconds
(user + sys), MB/s (slice text MB / wall seconds), peak RSS and the size of the stage's output.

Two commands:

    .venv/bin/python benchmarks/scale.py pipeline --slice 10mb [--lmplz /work/kenlm-build/bin/lmplz]
        [--work /work/scale-work] [--compare scale-100mb.json] [--stages ngram,...] [--set key=value ...]
    .venv/bin/python benchmarks/scale.py words --slice 10mb --repeat 3 [--lmplz-memory 1G]

``pipeline`` runs each stage as its own ``arpipe stage NAME`` child process, in pipeline order, with one
work dir and MLflow store per slice (``--work``/<slice>), so the peak RSS is that stage's own. Beside the
ngram stage it runs ``lmplz -o <order> -S <ngram.memory_budget_mb>M --vocab_pad <vocab size>`` on the
same text: the train split's token ids as lmplz words (one line per ``</s>``-terminated document, exactly
the sentences the ngram stage counts; ``--vocab_pad`` gives lmplz the stage's uniform 1/|V|, since the
stage counts every token id, seen or not), and scores the test split with pip's kenlm under both ARPAs. ``words`` is the issue's first
table: ``arpipe ngram estimate`` vs ``lmplz`` on a slice's whitespace-tokenized words.txt, runs
interleaved, medians reported, perplexity of both on the held-out words.

What is measured (each child process):
- CPU: user + sys from ``wait4``'s rusage, which includes the child's reaped descendants (the temporary
  Prefect API server each ``arpipe stage`` starts is one).
- peak RSS "main": the high-water mark of the child itself (the stage's Python process, or lmplz): the
  larger of its VmHWM read from /proc every 50 ms and ``wait4``'s ``ru_maxrss`` (the kernel's figure at
  exit; for lmplz it is 2-3x the sampled VmHWM: a brief peak the samples miss). "tree": the largest
  sum of VmRSS over the child and all its descendants seen in those samples (at least "main").
- "stage s": the seconds arpipe itself reports for the stage (no interpreter or Prefect start-up).
A child whose tree passes ``--rss-limit-mb`` (default 18000) is killed (its own process group) and
reported as such. "total" sums wall and CPU over the stages and takes the largest peak.

The scale runs' settings live in ``SCALE_SETTINGS`` below; a setting the current ``arcore/config.py``
refuses (not there yet, or out of its range) is skipped and the reason printed, not a crash.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ARPIPE = Path(sys.executable).parent / "arpipe"  # the venv's entry point; --code decides which tree it runs
DATA = Path("/work/scale-data")
MB = 1e6

# The scale runs' settings, in one place. Each is validated alone against the current config schema.
SCALE_SETTINGS = [
    "ngram.memory_budget_mb=2048",
    'ngram.models=["kneser-ney"]',
    "tokenizer.sample_bytes=50000000",   # train the tokenizer on a 50 MB deterministic sample
    'models=["ngram", "rnn", "transformer"]',
    "rnn.epochs=1", "rnn.max_steps=200",
    "transformer.epochs=1", "transformer.max_steps=200",
    "ngram.arpa=plain", "ngram.count_tables=false",  # lmplz writes a plain ARPA and no count tables
    "rnn.max_valid_tokens=200000", "transformer.max_valid_tokens=200000",
    "ngram.max_valid_tokens=1000000",  # the ngram stage's valid figures on a 1 M-token document sample
    "evaluate.max_score_tokens=200000",  # score valid/test on a 200 K-token document sample
                                          # (evaluate.max_tokens is the decoders' sample length)
]


# ---------------------------------------------------------------- measuring one child process

def _status(pid: int) -> dict[str, int]:
    out = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(("VmRSS:", "VmHWM:")):
                    out[line[:5]] = int(line.split()[1]) * 1024
    except OSError:
        pass
    return out


def _tree(pid: int) -> list[int]:
    pids, todo = [], [pid]
    while todo:
        p = todo.pop()
        pids.append(p)
        try:
            for tid in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{tid}/children") as f:
                    todo.extend(int(c) for c in f.read().split())
        except OSError:
            pass
    return pids


def measure(cmd: list[str], log: Path, rss_limit_mb: float, timeout_s: float, env: dict | None = None) -> dict:
    """Run ``cmd`` to completion; wall, user and sys seconds, peak RSS (main and tree), exit code."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log.with_suffix(".out"), "wb") as out, open(log.with_suffix(".err"), "wb") as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, env=env, start_new_session=True)
        hwm = tree_peak = 0
        killed = None
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            hwm = max(hwm, _status(proc.pid).get("VmHWM", 0))
            tree_peak = max(tree_peak, sum(_status(p).get("VmRSS", 0) for p in _tree(proc.pid)))
            elapsed = time.perf_counter() - t0
            if killed is None and (tree_peak > rss_limit_mb * MB or elapsed > timeout_s):
                killed = f"tree RSS {tree_peak / MB:.0f} MB" if tree_peak > rss_limit_mb * MB else f"{elapsed:.0f} s"
                os.killpg(proc.pid, signal.SIGKILL)
            time.sleep(0.05)
        wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    return {"wall_s": wall, "user_s": usage.ru_utime, "sys_s": usage.ru_stime, "cpu_s": usage.ru_utime + usage.ru_stime,
            "rss_main_mb": max(hwm, usage.ru_maxrss * 1024) / MB,
            "rss_tree_mb": max(tree_peak, hwm, usage.ru_maxrss * 1024) / MB,
            "rc": proc.returncode, "killed": killed, "log": str(log.with_suffix(".err"))}


def tail(path: str, lines: int = 5) -> str:
    return "\n".join(Path(path).read_text(errors="replace").splitlines()[-lines:])


def size_mb(path: Path) -> float:
    path = Path(path)
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    return sum(p.stat().st_size for p in files) / MB


# ---------------------------------------------------------------- lmplz and perplexity

def lmplz_cmd(lmplz: str, order: int, memory: str, text: Path, arpa: Path, tmp: Path,
              vocab_pad: int | None = None) -> list[str]:
    """``vocab_pad``: the tokenizer's vocabulary size, so that lmplz interpolates unigrams with the same
    uniform 1/|V| as the ngram stage (which counts every token id, seen or not, ``<pad>`` included)."""
    tmp.mkdir(parents=True, exist_ok=True)
    pad = ["--vocab_pad", str(vocab_pad)] if vocab_pad else []
    return [lmplz, "-o", str(order), "-S", memory, "-T", str(tmp), *pad, "--text", str(text), "--arpa", str(arpa)]


def perplexity(arpa: Path, text: Path) -> dict:
    """Perplexity of ``text`` (one sentence per line) under ``arpa`` with pip's kenlm, ``query``'s way:
    every word and ``</s>`` counted, OOVs included (and excluded)."""
    import kenlm

    model = kenlm.Model(str(arpa))
    total = oov_total = 0.0
    tokens = oovs = 0
    with open(text, encoding="utf-8") as f:
        for line in f:
            for logprob, _, oov in model.full_scores(line.strip()):
                total += logprob
                tokens += 1
                if oov:
                    oovs += 1
                    oov_total += logprob
    return {"ppl": 10 ** (-total / tokens), "ppl_excl_oov": 10 ** (-(total - oov_total) / max(tokens - oovs, 1)),
            "tokens": tokens, "oovs": oovs}


def export_ids_as_words(shards_dir: Path, split: str, tokenizer_dir: Path, arpa_words: str, path: Path) -> dict:
    """A split's ids as lmplz text: one line per ``</s>``-terminated document, each id written as the ARPA
    files of the ngram stage name it (token strings, or decimal ids), so both models score the same words."""
    import numpy as np

    from arcore.shards.reader import iter_shard_ids
    from arcore.tokenize.store import load_tokenizer

    tok = load_tokenizer(tokenizer_dir)
    names = [str(i) if arpa_words == "ids" else tok.tokenizer.id_to_token(i) for i in range(tok.vocab_size)]
    table = [n.encode("utf-8") + b" " for n in names]
    table[tok.eos_id] = b"\n"
    specials = 0
    with open(path, "wb") as f:
        for ids in iter_shard_ids(shards_dir, split, tok.sha256, verify=False):
            specials += int(np.count_nonzero((ids == tok.bos_id) | (ids == (tok.unk_id if tok.unk_id is not None else -1))))
            f.write(b"".join([table[i] for i in ids.tolist()]))
    return {"bytes": path.stat().st_size, "reserved_tokens_inside": specials}


# ---------------------------------------------------------------- pipeline

def resolve_settings(base: list[str], extra: list[str]) -> tuple[list[str], list[str]]:
    """(the overrides to use, why each skipped one was skipped): each scale setting is kept only when the
    current config accepts it."""
    from arcore.config import load_config
    from arcore.errors import ConfigError

    kept, skipped = [*base], []
    for item in [*SCALE_SETTINGS, *extra]:
        try:
            load_config(None, [*kept, item])
        except ConfigError as e:
            skipped.append(f"{item}: {e}")
            continue
        kept.append(item)
    return kept, skipped


def stage_names(overrides: list[str]) -> list[str]:
    from arcore.config import load_config
    from flows.stages import STAGES

    cfg = load_config(None, overrides)
    return [s.name for s in STAGES if s.selected(cfg)]


class SharedPrefect:
    """One Prefect API server for every stage child (``--prefect shared``), so that a stage's figures do
    not include starting Prefect's temporary server (20-30 s of CPU per ``arpipe stage`` on 2 cores)."""

    def __init__(self, work: Path, port: int):
        self.home, self.url = work / "prefect", f"http://127.0.0.1:{port}/api"
        self.port, self.proc = port, None

    def __enter__(self) -> str:
        import urllib.request

        env = {**os.environ, "PREFECT_HOME": str(self.home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
        log = open(self.home.parent / "logs" / "prefect-server.log", "wb")
        self.proc = subprocess.Popen([str(ARPIPE.parent / "prefect"), "server", "start", "--host", "127.0.0.1",
                                      "--port", str(self.port), "--no-ui", "--no-services"],
                                     stdout=log, stderr=log, env=env, start_new_session=True)
        for _ in range(600):
            try:
                urllib.request.urlopen(f"{self.url}/health", timeout=1).read()
                return self.url
            except OSError:
                if self.proc.poll() is not None:
                    sys.exit(f"error: the Prefect server exited; see {log.name}")
                time.sleep(0.5)
        sys.exit(f"error: the Prefect server did not answer on {self.url} in 5 minutes")

    def __exit__(self, *exc) -> None:
        os.killpg(self.proc.pid, signal.SIGTERM)
        self.proc.wait()


def run_pipeline(args) -> dict:
    work = (args.work / args.slice).resolve()
    (work / "logs").mkdir(parents=True, exist_ok=True)
    if args.prefect == "shared":
        with SharedPrefect(work, args.prefect_port) as url:
            return _run_pipeline(args, {"PREFECT_API_URL": url})
    return _run_pipeline(args, {})


def _run_pipeline(args, prefect_env: dict) -> dict:
    slice_dir = args.data_dir / args.slice
    manifest = json.loads((slice_dir / "manifest.json").read_text())
    slice_mb = manifest["docs"]["text_bytes"] / MB
    work = (args.work / args.slice).resolve()
    base = [f"work_dir={work}", f"ingest.inputs=[{json.dumps(str(slice_dir / 'docs'))}]",
            f"tracking.uri=sqlite:///{work}/mlflow.db"]
    overrides, skipped = resolve_settings(base, args.set)
    for s in skipped:
        print(f"skipped setting {s}", flush=True)
    names = stage_names(overrides)
    wanted = args.stages.split(",") if args.stages else names
    rows, outputs = [], {}
    env = {**child_env(args), "PREFECT_HOME": str(work / "prefect"), **prefect_env}
    for name in names:
        if name not in wanted:
            continue
        cmd = [str(ARPIPE), "stage", name, "--json", *[a for o in overrides for a in ("--set", o)]]
        print(f"[{args.slice}] stage {name} ...", flush=True)
        m = measure(cmd, work / "logs" / name, args.rss_limit_mb, args.timeout_s, env)
        row = {"stage": name, **m}
        if m["rc"] == 0:
            summary = json.loads(Path(work / "logs" / f"{name}.out").read_text())
            s = summary["stages"][0]
            row.update(stage_s=s["seconds"], output_dir=s["output_dir"], output_mb=size_mb(Path(s["output_dir"])),
                       metrics=s["metrics"])
            outputs[name] = Path(s["output_dir"])
        else:
            row["error"] = tail(m["log"])
        rows.append(row)
        print(f"    rc={m['rc']} wall={m['wall_s']:.1f}s cpu={m['cpu_s']:.1f}s rss main={m['rss_main_mb']:.0f}MB "
              f"tree={m['rss_tree_mb']:.0f}MB{'  KILLED: ' + m['killed'] if m['killed'] else ''}", flush=True)
        if m["rc"] != 0:
            print(row["error"])
            break
    server = ("one shared Prefect server, not counted" if prefect_env else
              "each child starts Prefect's temporary API server, counted in its wall, CPU and tree")
    result = {"slice": args.slice, "slice_mb": slice_mb, "overrides": overrides, "skipped_settings": skipped,
              "prefect": server,
              "rss_sampling": "main: the child's high-water mark (max of VmHWM sampled every 50 ms and "
                              "ru_maxrss); tree: max sum of VmRSS over the child's process tree in those samples",
              "stages": rows}
    lmplz = args.lmplz or _which("lmplz")
    if lmplz and ("ngram" in outputs or "lmplz" in wanted):  # --stages lmplz: beside the latest ngram output
        result["lmplz"] = run_lmplz_beside(args, lmplz, work, overrides, outputs, slice_mb)
    return result


def _latest_dirs(overrides: list[str], env: dict) -> dict[str, Path]:
    out = subprocess.run([str(ARPIPE), "status", "--json", *[a for o in overrides for a in ("--set", o)]],
                         capture_output=True, text=True, env=env, check=True).stdout
    return {r["stage"]: Path(r["output_dir"]) for r in json.loads(out)["stages"] if r["output_dir"]}


def run_lmplz_beside(args, lmplz: str, work: Path, overrides: list[str], outputs: dict, slice_mb: float) -> dict:
    from arcore.config import load_config

    cfg = load_config(None, overrides)
    dirs = {**_latest_dirs(overrides, {**child_env(args), "PREFECT_HOME": str(work / "prefect")}), **outputs}
    ngram_dir = dirs["ngram"]
    arpa_words = json.loads((ngram_dir / "models.json").read_text())["arpa_words"]
    lm_dir = work / "lmplz"
    lm_dir.mkdir(parents=True, exist_ok=True)
    exported = {split: export_ids_as_words(dirs["shards"], split, dirs["tokenizer"], arpa_words, lm_dir / f"{split}.txt")
                for split in ("train", "test")}
    memory = f"{cfg.ngram.memory_budget_mb}M"
    print(f"[{args.slice}] lmplz -o {cfg.ngram.order} -S {memory} on {exported['train']['bytes'] / MB:.0f} MB of "
          f"train ids ...", flush=True)
    vocab_size = json.loads((ngram_dir / "models.json").read_text())["models"]["kneser-ney"]["vocab_size"]
    m = measure(lmplz_cmd(lmplz, cfg.ngram.order, memory, lm_dir / "train.txt", lm_dir / "lmplz.arpa", lm_dir / "tmp",
                          vocab_pad=vocab_size), lm_dir / "lmplz", args.rss_limit_mb, args.timeout_s)
    out = {"binary": lmplz, "memory": memory, "exported": exported, **m, "output_mb": size_mb(lm_dir / "lmplz.arpa")}
    build_binary = Path(lmplz).with_name("build_binary")
    if m["rc"] == 0 and build_binary.exists():
        # the stage writes the ARPA *and* a probing binary: lmplz + build_binary is the same work
        print(f"[{args.slice}] build_binary probing on lmplz's ARPA ...", flush=True)
        b = measure([str(build_binary), "-S", memory, "probing", str(lm_dir / "lmplz.arpa"), str(lm_dir / "lmplz.probing")],
                    lm_dir / "build_binary", args.rss_limit_mb, args.timeout_s)
        out["build_binary"] = {**b, "output_mb": size_mb(lm_dir / "lmplz.probing") if b["rc"] == 0 else None}
        (lm_dir / "lmplz.probing").unlink(missing_ok=True)
    if m["rc"] == 0:
        ours = next((p for p in (ngram_dir / "kneser-ney.arpa.gz", ngram_dir / "kneser-ney.arpa") if p.exists()),
                    ngram_dir / "kneser-ney.arpa.gz")  # ngram.arpa = gzip or plain
        out["test_ppl"] = {"lmplz": perplexity(lm_dir / "lmplz.arpa", lm_dir / "test.txt"),
                           "arpipe": perplexity(ours, lm_dir / "test.txt") if ours.exists() else None}
    else:
        out["error"] = tail(m["log"])
    return out


def child_env(args) -> dict:
    """The children import arcore and flows from ``--code`` (another checkout or a ``git archive``)."""
    return {**os.environ, "PYTHONPATH": str(args.code)}


def code_label(code: Path) -> str:
    """The measured tree's commit (``-dirty`` when it has uncommitted changes), or its path if not a checkout."""
    try:
        head = subprocess.run(["git", "-C", str(code), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(code), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True).stdout.strip()
        if Path(subprocess.run(["git", "-C", str(code), "rev-parse", "--show-toplevel"], capture_output=True,
                               text=True).stdout.strip()).resolve() == code.resolve():
            return head + ("-dirty" if dirty else "")
    except (subprocess.CalledProcessError, FileNotFoundError):
        pass
    return str(code)


def _which(name: str) -> str | None:
    from shutil import which

    return which(name)


def pipeline_table(result: dict, other: dict | None) -> str:
    mb = result["slice_mb"]
    lines = [f"Slice {result['slice']} ({mb:.0f} MB of text). RSS: {result['rss_sampling']}; Prefect: "
             f"{result.get('prefect', '')}.", "",
             "| stage | wall s | stage s | CPU s | MB/s | peak RSS main MB | peak RSS tree MB | output MB |"
             + (f" wall/MB vs {other['slice']} |" if other else ""),
             "|---|---|---|---|---|---|---|---|" + ("---|" if other else "")]
    prev = {r["stage"]: r for r in other["stages"]} if other else {}
    for r in result["stages"]:
        ratio = ""
        if other:
            p = prev.get(r["stage"])
            ratio = (f" {(r['wall_s'] / mb) / (p['wall_s'] / other['slice_mb']):.2f} |" if p else " - |")
        lines.append(f"| {r['stage']} | {r['wall_s']:.1f} | {r.get('stage_s', float('nan')):.1f} | {r['cpu_s']:.1f} | "
                     f"{mb / r['wall_s']:.2f} | {r['rss_main_mb']:.0f} | {r['rss_tree_mb']:.0f} | "
                     f"{r.get('output_mb', float('nan')):.1f} |{ratio}"
                     + (f" rc={r['rc']} {r['killed'] or ''}" if r["rc"] else ""))
    rows = result["stages"] or [{"stage": "-", "wall_s": 0.0, "cpu_s": 0.0, "rss_main_mb": 0.0, "rss_tree_mb": 0.0}]
    wall, cpu = sum(r["wall_s"] for r in rows), sum(r["cpu_s"] for r in rows)
    lines.append(f"| total (sum / max) | {wall:.1f} | {sum(r.get('stage_s', 0) for r in rows):.1f} | {cpu:.1f} | "
                 f"{mb / wall if wall else float('nan'):.2f} | {max(r['rss_main_mb'] for r in rows):.0f} | "
                 f"{max(r['rss_tree_mb'] for r in rows):.0f} | {sum(r.get('output_mb', 0) for r in rows):.1f} |"
                 + (" |" if other else ""))
    lm = result.get("lmplz")
    if lm:
        lines.append(f"| lmplz -S {lm['memory']} | {lm['wall_s']:.1f} | - | {lm['cpu_s']:.1f} | {mb / lm['wall_s']:.2f} | "
                     f"{lm['rss_main_mb']:.0f} | {lm['rss_tree_mb']:.0f} | {lm['output_mb']:.1f} |" + (" |" if other else ""))
        bb = lm.get("build_binary")
        if bb and bb["rc"] == 0:
            lines.append(f"| build_binary probing (lmplz's ARPA) | {bb['wall_s']:.1f} | - | {bb['cpu_s']:.1f} | "
                         f"{mb / bb['wall_s']:.2f} | {bb['rss_main_mb']:.0f} | {bb['rss_tree_mb']:.0f} | "
                         f"{bb['output_mb']:.1f} |" + (" |" if other else ""))
        ng = next((r for r in rows if r["stage"] == "ngram"), None)
        lines.append("")
        if ng:
            lines.append(f"ngram stage vs lmplz: CPU {ng['cpu_s'] / lm['cpu_s']:.2f}x, peak RSS (main) "
                         f"{ng['rss_main_mb'] / lm['rss_main_mb']:.2f}x, wall {ng['wall_s'] / lm['wall_s']:.2f}x")
            if bb and bb["rc"] == 0:
                both = lm["cpu_s"] + bb["cpu_s"]
                lines.append(f"ngram stage (ARPA + probing binary) vs lmplz + build_binary probing (the same two "
                             f"outputs): CPU {ng['cpu_s'] / both:.2f}x, peak RSS (main) "
                             f"{ng['rss_main_mb'] / max(lm['rss_main_mb'], bb['rss_main_mb']):.2f}x")
        ppl = lm.get("test_ppl")
        if ppl and ppl["arpipe"]:
            lines.append(f"test-split perplexity per token (pip kenlm, OOVs included): lmplz {ppl['lmplz']['ppl']:.4f}, "
                         f"arpipe kneser-ney {ppl['arpipe']['ppl']:.4f} ({ppl['lmplz']['tokens']} tokens)")
    if result["skipped_settings"]:
        lines += ["", "Settings the current code refuses (skipped):"] + [f"- {s}" for s in result["skipped_settings"]]
    return "\n".join(lines)


# ---------------------------------------------------------------- words: arpipe ngram estimate vs lmplz

def run_words(args) -> dict:
    text = args.data_dir / args.slice / "words.txt"
    heldout = args.data_dir / "heldout" / "words.txt"
    work = (args.work / f"words-{args.slice}").resolve()
    lmplz = args.lmplz or _which("lmplz")
    if not lmplz:
        sys.exit("error: no lmplz on PATH; pass --lmplz (build KenLM from source: see BENCHMARKS.md)")
    tools = {
        "lmplz": lmplz_cmd(lmplz, args.order, args.lmplz_memory, text, work / "lmplz.arpa", work / "tmp"),
        "arpipe": [str(ARPIPE), "ngram", "estimate", "--order", str(args.order), "--smoothing", "kneser-ney",
                   "--input", str(text), "--arpa", str(work / "arpipe.arpa"), "--memory-mb", str(args.memory_mb)],
    }
    runs = {name: [] for name in tools}
    for i in range(args.repeat):
        for name in (list(tools) if i % 2 == 0 else list(tools)[::-1]):  # interleaved, alternating first
            m = measure(tools[name], work / "logs" / f"{name}-{i}", args.rss_limit_mb, args.timeout_s, child_env(args))
            runs[name].append(m)
            print(f"[{args.slice}] {name} run {i}: rc={m['rc']} user={m['user_s']:.1f}s sys={m['sys_s']:.1f}s "
                  f"wall={m['wall_s']:.1f}s rss={m['rss_main_mb']:.0f}MB{' KILLED ' + m['killed'] if m['killed'] else ''}",
                  flush=True)
    result = {"slice": args.slice, "text_mb": text.stat().st_size / MB, "order": args.order, "runs": runs,
              "commands": {k: " ".join(v) for k, v in tools.items()}, "medians": {}, "heldout_ppl": {}}
    for name, ms in runs.items():
        ok = [m for m in ms if m["rc"] == 0]
        if ok:
            result["medians"][name] = {k: statistics.median(m[k] for m in ok)
                                       for k in ("user_s", "sys_s", "cpu_s", "wall_s", "rss_main_mb")}
            result["heldout_ppl"][name] = perplexity(work / f"{name}.arpa", heldout)
    return result


def words_table(result: dict) -> str:
    lines = [f"{result['text_mb']:.0f} MB words.txt ({result['slice']}), order {result['order']}, medians of "
             f"{len(next(iter(result['runs'].values())))} interleaved runs; held-out perplexity with pip kenlm", "",
             "| tool | user s | sys s | CPU s | wall s | peak RSS MB | held-out ppl (incl. OOV) | OOVs |",
             "|---|---|---|---|---|---|---|---|"]
    for name, md in result["medians"].items():
        p = result["heldout_ppl"][name]
        lines.append(f"| {name} | {md['user_s']:.1f} | {md['sys_s']:.1f} | {md['cpu_s']:.1f} | {md['wall_s']:.1f} | "
                     f"{md['rss_main_mb']:.0f} | {p['ppl']:.3f} | {p['oovs']} |")
    if len(result["medians"]) == 2:
        a, l = result["medians"]["arpipe"], result["medians"]["lmplz"]
        lines += ["", f"arpipe / lmplz: CPU {a['cpu_s'] / l['cpu_s']:.2f}x, peak RSS {a['rss_main_mb'] / l['rss_main_mb']:.2f}x"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="command", required=True)
    for name in ("pipeline", "words"):
        p = sub.add_parser(name)
        p.add_argument("--slice", default="10mb", help="a folder of --data-dir: 10mb, 100mb, 1gb")
        p.add_argument("--data-dir", type=Path, default=DATA)
        p.add_argument("--work", type=Path, default=Path("/work/scale-work"))
        p.add_argument("--lmplz", default=None, help="lmplz binary (default: lmplz on PATH)")
        p.add_argument("--rss-limit-mb", type=float, default=18000, help="kill a child whose process tree passes this")
        p.add_argument("--timeout-s", type=float, default=6 * 3600)
        p.add_argument("--out", type=Path, default=None, help="JSON results (default: <work>/scale-<slice>.json)")
        p.add_argument("--code", type=Path, default=ROOT, help="the arpipe tree to measure (default: this checkout); "
                       "e.g. a `git archive <commit>` export for before/after figures")
        p.add_argument("--label", default=None, help="name of the measured code in the output (default: its commit)")
    pp = sub.choices["pipeline"]
    pp.add_argument("--stages", default=None, help="comma-separated subset (default: every selected stage); "
                    "'lmplz' alone reruns lmplz beside the latest ngram output")
    pp.add_argument("--set", action="append", default=[], help="extra override section.key=value (repeatable)")
    pp.add_argument("--prefect", choices=["shared", "temporary"], default="shared",
                    help="shared: one Prefect server for all stages (default); temporary: each stage starts its own")
    pp.add_argument("--prefect-port", type=int, default=4277)
    pp.add_argument("--compare", type=Path, default=None, help="a smaller slice's JSON: per-MB time ratios")
    pw = sub.choices["words"]
    pw.add_argument("--order", type=int, default=5)
    pw.add_argument("--repeat", type=int, default=3)
    pw.add_argument("--lmplz-memory", default="1G", help="lmplz -S")
    pw.add_argument("--memory-mb", type=int, default=1024, help="arpipe ngram estimate --memory-mb")
    args = ap.parse_args(argv)
    args.code = args.code.resolve()
    sys.path.insert(0, str(args.code))
    label = args.label or code_label(args.code)
    if args.command == "pipeline":
        result = run_pipeline(args)
        other = json.loads(args.compare.read_text()) if args.compare else None
        table = pipeline_table(result, other)
    else:
        result = run_words(args)
        table = words_table(result)
    out = args.out or args.work / f"scale-{args.command}-{args.slice}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    table = f"Code: {label}. " + table
    out.write_text(json.dumps({**result, "code": label, "table": table}, indent=2, default=str) + "\n")
    print(table)
    print(f"\nresults: {out}")


if __name__ == "__main__":
    main()
