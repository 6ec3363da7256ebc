"""``arpipe gc --keep 1`` after three real pipeline runs: the last run's outputs survive and stay cached.

Runs (same corpus):  A = order 3;  B = A with tokenizer.vocab_size=300;  C = A with ngram.order=2.
C reuses A's ingest, tokenizer and shards; B's tokenizer and shards remain each stage's LATEST (B
committed them after A), so they are kept too, with ingest as their upstream. A's and B's ngram and
evaluate outputs are removed, and so are the Prefect result files an older arpipe left for them (runs
persist none now, issue 17: the files are planted here as such a version wrote them).
"""

from __future__ import annotations

import json
from pathlib import Path

import typer
from typer.testing import CliRunner

from arcore.config import load_config
from arcore.retention import RUN_LOCK
from arcore.stage import is_locked
from flows.cli_ops import gc_command
from flows.ops import prefect_result_storage
from flows.pipeline import pipeline
from flows.stages import default_stage_names
from tests.conftest import write_corpus

DEFAULT_STAGES = default_stage_names()  # the stages a default config runs


def outputs(summary) -> dict[str, Path]:
    return {s["stage"]: Path(s["output_dir"]) for s in summary["stages"]}


def results_of(storage: Path, out: Path) -> list[Path]:
    return list(storage.glob(f"arpipe-{out.parent.name}-{out.name}-*"))


def plant_result(storage: Path, out: Path) -> None:
    """A result file as arpipe <= issue 16 persisted it: ``arpipe-<stage>-<key>-<digest16>``."""
    digest = json.loads((out / "manifest.json").read_text())["digest"]
    storage.mkdir(parents=True, exist_ok=True)
    (storage / f"arpipe-{out.parent.name}-{out.name}-{digest[:16]}").write_text("{}")


def test_gc_keeps_last_run_and_latest(prefect_harness, tmp_path, mlflow_uri):
    corpus = write_corpus(tmp_path / "corpus" / "a.txt", n_paragraphs=150)
    base = [f"work_dir={tmp_path / 'work'}", f"tracking.uri={mlflow_uri}", f"ingest.inputs=[{corpus}]",
            "ingest.valid_fraction=0.1", "ingest.test_fraction=0.1", "ngram.order=3"]
    a = outputs(pipeline(config=load_config(overrides=base)))
    assert outputs(pipeline(config=load_config(overrides=base))) == a
    b = outputs(pipeline(config=load_config(overrides=[*base, "tokenizer.vocab_size=300"])))
    cfg_c = load_config(overrides=[*base, "ngram.order=2"])
    c = outputs(pipeline(config=cfg_c))
    assert c["tokenizer"] == a["tokenizer"] != b["tokenizer"] and c["ngram"] != a["ngram"]
    storage = prefect_result_storage()
    assert not any(results_of(storage, out) for run in (a, b, c) for out in run.values())  # none persisted
    for out in (a["ngram"], a["evaluate"], c["tokenizer"], c["shards"]):
        plant_result(storage, out)

    app = typer.Typer()
    app.command("gc")(gc_command)
    app.command("noop")(lambda: None)  # two commands, so "gc" is a subcommand as in `arpipe gc`
    sets = [f"--set={s}" for s in base]
    dry = CliRunner().invoke(app, ["gc", "--keep", "1", "--dry-run", "--json", *sets])
    assert dry.exit_code == 0, dry.output
    planned = {Path(r["path"]) for r in json.loads(dry.output)["remove"] if r["kind"] == "output"}
    assert planned == {a["ngram"], a["evaluate"], b["ngram"], b["evaluate"]}
    assert all(p.is_dir() for p in planned)  # dry run removed nothing

    done = CliRunner().invoke(app, ["gc", "--keep", "1", *sets])
    assert done.exit_code == 0, done.output
    assert "removed" in done.output.splitlines()[-1]
    assert not any(p.exists() for p in planned)
    for stage, out in c.items():
        assert (out / "manifest.json").is_file(), stage
    assert (b["tokenizer"] / "manifest.json").is_file() and (b["shards"] / "manifest.json").is_file()
    assert not results_of(storage, a["ngram"]) and not results_of(storage, a["evaluate"])
    assert results_of(storage, c["tokenizer"]) and results_of(storage, c["shards"])
    assert len(list((tmp_path / "work" / "runs").glob("*.json"))) == 4  # history stays

    again = pipeline(config=cfg_c)
    assert {s["stage"]: s["state"] for s in again["stages"]} == {n: "cached" for n in DEFAULT_STAGES}
    assert outputs(again) == c
    assert not results_of(storage, c["ngram"])  # a cached use persists nothing either

    bad = CliRunner().invoke(app, ["gc", "--keep", "0", *sets])
    assert bad.exit_code == 2 and "error: gc --keep 0: keep at least 1 run" in bad.output


def test_gc_during_a_run_removes_nothing_and_the_run_completes(prefect_harness, tmp_path, mlflow_uri):
    """Issue 17: ``gc --keep 1`` while a run reads outputs the last run record does not list refuses with
    one line; the run finishes on its cached outputs; gc after it removes what that run did not use."""
    import threading

    corpus = write_corpus(tmp_path / "corpus" / "a.txt", n_paragraphs=150)
    work = tmp_path / "work"
    base = [f"work_dir={work}", f"tracking.uri={mlflow_uri}", f"ingest.inputs=[{corpus}]",
            "ingest.valid_fraction=0.1", "ingest.test_fraction=0.1", "ngram.order=3"]
    cfg_a, cfg_b = load_config(overrides=base), load_config(overrides=[*base, "ngram.order=2"])
    a = outputs(pipeline(config=cfg_a))
    b = outputs(pipeline(config=cfg_b))
    assert a["ngram"] != b["ngram"]  # the last record (B) does not list A's ngram and evaluate outputs

    result: dict = {}

    def run_a() -> None:
        try:
            result["summary"] = pipeline(config=cfg_a)  # every stage cached: it reads A's outputs
        except BaseException as e:  # reported by the assertion below
            result["error"] = e

    app = typer.Typer()
    app.command("gc")(gc_command)
    app.command("noop")(lambda: None)
    sets = [f"--set={s}" for s in base]
    thread = threading.Thread(target=run_a)
    thread.start()
    try:
        while not is_locked(work / RUN_LOCK) and thread.is_alive():
            thread.join(0.005)
        assert thread.is_alive(), f"the run ended before gc could start: {result}"
        refused = CliRunner().invoke(app, ["gc", "--keep", "1", *sets])
        planned = CliRunner().invoke(app, ["gc", "--keep", "1", "--dry-run", "--json", *sets])
    finally:
        thread.join()
    assert "error" not in result, result.get("error")
    assert {s["stage"]: s["state"] for s in result["summary"]["stages"]} == {n: "cached" for n in DEFAULT_STAGES}
    assert refused.exit_code == 1, refused.output
    lines = refused.output.strip().splitlines()
    assert len(lines) == 1 and "a pipeline run is in progress" in lines[0] and "Traceback" not in refused.output
    assert planned.exit_code == 0, planned.output  # a dry run only reads: it plans during a run
    for out in (*a.values(), *b.values()):
        assert (out / "manifest.json").is_file(), out  # nothing removed while the run was in progress

    done = CliRunner().invoke(app, ["gc", "--keep", "1", *sets])  # after the run, gc works again
    assert done.exit_code == 0, done.output
    assert all((out / "manifest.json").is_file() for out in a.values())  # the last run's outputs stay
