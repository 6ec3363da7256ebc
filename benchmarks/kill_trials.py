"""Random SIGKILLs of ``arpipe run`` in one work dir, then a final run: every stage's output as a clean run's.

Issue 17, bar 1. The script

1. runs ``arpipe run --json`` once in a fresh work dir (``clean/``) and records each stage's key and
   output digest and how long the run took (T);
2. in another work dir (``killed/``), starts ``arpipe run`` again and again and SIGKILLs its process
   group (the CLI and the Prefect server it started) until ``--trials`` runs have been killed or
   ``--max-minutes`` have passed: one kill in five during the start-up (uniform in [0.3 s, 0.9 x the
   median time to the flow's start]), the others after the log says ``Beginning flow run``, at a moment
   uniform over the stage seconds this run recomputes (by the clean run's; at least 1 s, which covers a
   cached run's lookups, evaluate's reuse and register). A run that ends before its kill moment is
   recorded and not counted. Plain runs continue the work dir (resumable stages resume); once it is
   complete, the next run is ``arpipe run --from STAGE`` for a random stage, whose kills land in
   recomputed work (a forced recompute resumes its own ``.partial`` build and must never damage the
   committed output it replaces), and after a killed forced run a plain run follows half of the time;
3. runs ``arpipe run --json`` in ``killed/`` to the end and compares every stage's key and output digest
   with the clean run's; prints one JSON line per trial (phase, kill moment, the stage tasks the killed
   run had finished, what it printed last) and a summary (kills per interrupted stage), and exits 1 if
   any digest differs.

Both work dirs have their own MLflow SQLite store and Prefect home. The corpus is the first
``--corpus-bytes`` of the bundled Tiny Shakespeare (cut at a paragraph) and the config is small
(``--set`` overrides it further) so a run takes well under a minute on 2 quiet cores; dropout is on and
the RNN writes a checkpoint every 20 steps, so kills inside training resume from mid-epoch checkpoints
with the torch RNG state mattering::

    python benchmarks/kill_trials.py --trials 30 --out /tmp/kill-trials
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SMALL = ["tokenizer.vocab_size=512", "ngram.order=3", "ngram.models=[kneser-ney]",
         "evaluate.strategies=[greedy,sample]", "rnn.emb_size=32", "rnn.hidden_size=32", "rnn.epochs=1",
         "rnn.batch_size=16", "rnn.bptt=32", "rnn.dropout=0.1", "rnn.checkpoint_every=20",
         "rnn.eval_batch_size=16", "evaluate.max_tokens=16"]
STAGE_ORDER = ("ingest", "tokenizer", "shards", "ngram", "rnn", "infinigram", "evaluate")


def _cmd(work: Path, sets: list[str], *extra: str) -> list[str]:
    return [sys.executable, "-m", "flows.cli", "run", *extra, f"--set=work_dir={work}",
            f"--set=tracking.uri=sqlite:///{work / 'mlflow.db'}", *(f"--set={s}" for s in sets)]


def _env(work: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MLFLOW_"))}
    return {**env, "PREFECT_HOME": str(work / "prefect"), "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}


def complete_run(work: Path, sets: list[str]) -> tuple[dict, float]:
    t0 = time.monotonic()
    p = subprocess.run(_cmd(work, sets, "--json"), cwd=ROOT, env=_env(work), capture_output=True, text=True,
                       timeout=1800)
    if p.returncode != 0:
        sys.exit(f"error: the run in {work} failed (exit {p.returncode}): {p.stderr.strip().splitlines()[-1:]}")
    return json.loads(p.stdout), time.monotonic() - t0


def outputs(summary: dict) -> dict[str, tuple[str, str]]:
    """stage -> (key, output digest) read from each output's manifest."""
    out = {}
    for s in summary["stages"]:
        manifest = json.loads((Path(s["output_dir"]) / "manifest.json").read_text())
        out[s["stage"]] = (manifest["key"], manifest["digest"])
    return out


def _finished_tasks(text: list[str]) -> list[str]:
    """Stage task runs the log says finished (``Task run 'rnn-3f2' - Finished in state ...``)."""
    out = []
    for line in text:
        if "Task run '" in line and "Finished in state" in line:
            name = line.split("Task run '", 1)[1].split("'", 1)[0]  # "rnn a5978c86b4dc974b" (stage, key)
            out.append(name.split(" ", 1)[0])
    return out


def killed_run(work: Path, sets: list[str], extra: list[str], phase: str, at: float) -> dict:
    """Start a run and SIGKILL its process group: ``at`` seconds after it starts (``phase`` "startup": the
    CLI, the temporary Prefect server, the flow's set-up) or ``at`` seconds after the flow began
    (``phase`` "stages": the log's ``Beginning flow run``), so most kills land in stage work; what it had
    done by then, from its log."""
    log = work.parent / "last-run.log"
    t0 = time.monotonic()
    began = None
    with open(log, "w") as out:
        p = subprocess.Popen(_cmd(work, sets, *extra), cwd=ROOT, env=_env(work), stdout=out,
                             stderr=subprocess.STDOUT, start_new_session=True)
        deadline = t0 + at if phase == "startup" else None
        while p.poll() is None:
            now = time.monotonic()
            if deadline is None and "Beginning flow run" in log.read_text(errors="replace"):
                began = now - t0
                deadline = now + at
            if deadline is not None and now >= deadline:
                os.killpg(p.pid, signal.SIGKILL)
                break
            time.sleep(0.02)
        p.wait()
        killed = p.returncode == -signal.SIGKILL
    elapsed = time.monotonic() - t0
    text = log.read_text(errors="replace").splitlines()
    finished = _finished_tasks(text)
    return {"killed": killed, "rc": p.returncode, "phase": phase, "at_s": round(at, 2),
            "flow_began_s": None if began is None else round(began, 2), "run_s": round(elapsed, 2),
            "mode": " ".join(extra) or "run", "tasks_finished": finished,
            "last_line": text[-1][:160] if text else ""}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--trials", type=int, default=30, help="runs to kill (runs that finish first do not count)")
    ap.add_argument("--out", type=Path, default=Path("/tmp/arpipe-kill-trials"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-minutes", type=float, default=0, help="stop killing after this long (0: no limit)")
    ap.add_argument("--keep-clean", action="store_true", help="reuse a complete clean/ work dir from an earlier call")
    ap.add_argument("--corpus-bytes", type=int, default=200_000, help="0: the whole bundled corpus")
    ap.add_argument("--set", dest="sets", action="append", default=[], help="extra config override")
    args = ap.parse_args()
    rng = random.Random(args.seed)
    clean_work, work = args.out / "clean" / "work", args.out / "killed" / "work"
    if args.keep_clean and clean_work.is_dir():
        shutil.rmtree(work.parent, ignore_errors=True)
    else:
        shutil.rmtree(args.out, ignore_errors=True)
    args.out.mkdir(parents=True, exist_ok=True)
    text = (ROOT / "data" / "tinyshakespeare" / "input.txt").read_text(encoding="utf-8")
    if args.corpus_bytes:
        text = text[: text.rfind("\n\n", 0, args.corpus_bytes) + 1]
    corpus = args.out / "corpus" / "input.txt"
    corpus.parent.mkdir(exist_ok=True)
    corpus.write_text(text, encoding="utf-8")
    sets = [*SMALL, f"ingest.inputs=[{corpus}]", *args.sets]
    clean_work.mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True)

    clean, seconds = complete_run(clean_work, sets)
    reference = outputs(clean)
    stage_s = {s["stage"]: json.loads((Path(s["output_dir"]) / "manifest.json").read_text())["seconds"]
               for s in clean["stages"]}
    names = [s["stage"] for s in clean["stages"]]
    startup = max(seconds - sum(stage_s.values()), 5.0) if not args.keep_clean else seconds  # a cached rerun
    print(json.dumps({"clean_run_s": round(seconds, 1), "stage_s": stage_s, "stages": reference}), flush=True)

    flow_began: list[float] = []  # seconds from start to "Beginning flow run", per run that got there

    def startup_s() -> float:
        return sorted(flow_began)[len(flow_began) // 2] if flow_began else startup

    def work_s(first: str | None) -> float:
        """Stage seconds of a run recomputing from ``first``; ``None``: every stage cached."""
        return 0.0 if first is None else sum(stage_s[n] for n in names[names.index(first):])

    t0 = time.monotonic()
    kills, trials, complete = 0, [], False
    while kills < args.trials and not (args.max_minutes and time.monotonic() - t0 > 60 * args.max_minutes):
        forced = complete and (not trials[-1]["killed"] or trials[-1]["mode"] == "run" or rng.random() < 0.5)
        first = rng.choice([n for n in STAGE_ORDER if n in names]) if forced else names[0]
        extra = ["--from", first] if forced else []
        if rng.random() < 0.2:  # in the start-up, before the flow runs any stage
            trial = killed_run(work, sets, extra, "startup", rng.uniform(0.3, max(0.9 * startup_s(), 0.6)))
        else:  # in stage work: the stages this run recomputes, by the clean run's seconds (cached: lookups)
            trial = killed_run(work, sets, extra, "stages", rng.uniform(0.0, max(0.95 * work_s(
                first if forced or not complete else None), 1.0)))
        trials.append(trial)
        if trial["flow_began_s"] is not None:
            flow_began.append(trial["flow_began_s"])
        kills += trial["killed"]
        if not trial["killed"]:
            if trial["rc"] != 0:
                print(json.dumps({"trial": len(trials), **trial}), flush=True)
                sys.exit(f"error: an unkilled run failed (exit {trial['rc']}): {trial['last_line']}")
            complete = True
        print(json.dumps({"trial": len(trials), "kills": kills, **trial}), flush=True)

    final, _ = complete_run(work, sets)
    got = outputs(final)
    differ = sorted(s for s in reference if got.get(s) != reference[s])
    states = {s["stage"]: s["state"] for s in final["stages"]}
    where: dict[str, int] = {}  # the stage each kill interrupted (the first not yet finished), or start-up
    for t in trials:
        if t["killed"]:
            at = "start-up" if t["flow_began_s"] is None else next(
                (n for n in STAGE_ORDER if n in names and n not in t["tasks_finished"]), "register")
            where[at] = where.get(at, 0) + 1
    print(json.dumps({"kills": kills, "kills_by_stage": where, "runs": len(trials),
                      "finished_before_kill": len(trials) - kills,
                      "final_states": states, "stages_compared": sorted(reference), "differ": differ}), flush=True)
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
