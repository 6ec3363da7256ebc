"""Retention on hand-built work dirs: what the last N runs need stays, the rest goes, busy work is untouched.

The scenario of most tests (three stages, three runs, each run recorded by ``arcore.runs.record_run``)::

    run A: ingest i1 -> tokenizer tA -> ngram nA
    run B: ingest i1 -> tokenizer tB -> ngram nB      (tokenizer setting changed)
    run C: ingest i1 -> tokenizer tA -> ngram nC      (back to A's tokenizer, n-gram setting changed)

tA was committed before tB, so tokenizer's LATEST is tB; ngram's LATEST is nC. With keep=1 the plan keeps
C's three outputs, tB (LATEST) and nothing else; nA and nB are removed.
"""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path

import pytest

from arcore.errors import ConfigError
from arcore.retention import apply_gc, plan_gc
from arcore.runs import record_run
from arcore.stage import StageDir, StageOutput, build, stage_key


def commit(work: Path, stage: str, setting: str, upstream: dict[str, StageDir] | None = None, size: int = 100) -> StageDir:
    """A real committed output (manifest, LATEST) whose key depends on ``setting`` and its upstream digests."""
    digests = {name: d.manifest().digest for name, d in (upstream or {}).items()}
    d = StageDir(work, stage, stage_key(stage, {"setting": setting}, digests))

    def compute(out: Path) -> StageOutput:
        (out / "data.bin").write_bytes(setting.encode() * (size // len(setting)))
        return StageOutput()

    build(d, compute, config={"setting": setting}, upstream=digests, produced_by={})
    return d


def record(work: Path, run_id: str, outputs: list[StageDir], mode: str = "run") -> Path:
    summary = {"flow_run_id": run_id, "mlflow_run_id": None,
               "stages": [{"stage": d.stage, "output_dir": str(d.path), "state": "completed"} for d in outputs]}
    path = record_run(work, summary, mode)
    time.sleep(0.01)
    return path


@pytest.fixture
def abc(tmp_path):
    work = tmp_path / "work"
    i1 = commit(work, "ingest", "i1")
    tA = commit(work, "tokenizer", "A", {"ingest": i1})
    nA = commit(work, "ngram", "A", {"tokenizer": tA})
    record(work, "run-a", [i1, tA, nA])
    tB = commit(work, "tokenizer", "B", {"ingest": i1})
    nB = commit(work, "ngram", "B", {"tokenizer": tB})
    record(work, "run-b", [i1, tB, nB])
    nC = commit(work, "ngram", "C", {"tokenizer": tA})
    record(work, "run-c", [i1, tA, nC])
    return work, dict(i1=i1, tA=tA, nA=nA, tB=tB, nB=nB, nC=nC)


def kept_reasons(plan) -> dict[Path, str]:
    return {k.path: k.reason for k in plan.kept}


def test_keep_last_run_and_latest_remove_the_rest(abc):
    work, d = abc
    plan = plan_gc(work, keep=1)
    assert {r.path for r in plan.remove} == {d["nA"].path, d["nB"].path}
    assert all(r.kind == "output" and r.reason == "not used by the last runs" for r in plan.remove)
    reasons = kept_reasons(plan)
    assert reasons[d["i1"].path].startswith("run ") and "run-c" in reasons[d["i1"].path]
    assert "run-c" in reasons[d["tA"].path] and "run-c" in reasons[d["nC"].path]
    assert reasons[d["tB"].path] == "latest"
    assert plan.bytes_freed == sum(sum(p.stat().st_size for p in r.path.rglob("*") if p.is_file())
                                   for r in plan.remove) > 200
    assert plan.lines()[-1].startswith("2 to remove")

    report = apply_gc(plan)
    assert report.skipped == () and report.bytes_freed == plan.bytes_freed
    assert not d["nA"].path.exists() and not d["nB"].path.exists()
    assert all(d[n].is_complete() for n in ("i1", "tA", "tB", "nC"))
    assert not (d["nA"].root / f".lock-{d['nA'].key}").exists()
    assert plan_gc(work, keep=1).remove == ()


def test_keep_two_keeps_run_b(abc):
    work, d = abc
    plan = plan_gc(work, keep=2)
    assert [r.path for r in plan.remove] == [d["nA"].path]
    assert plan.runs == tuple(sorted(p.name for p in (work / "runs").glob("*.json")))[-2:]


def test_only_run_keeps_the_upstream_it_read(tmp_path):
    """`arpipe stage ngram` records ngram alone; the tokenizer it read must stay after LATEST moves on."""
    work = tmp_path / "work"
    i1 = commit(work, "ingest", "i1")
    tA = commit(work, "tokenizer", "A", {"ingest": i1})
    nA = commit(work, "ngram", "A", {"tokenizer": tA})
    record(work, "full", [i1, tA, nA])
    commit(work, "tokenizer", "B", {"ingest": commit(work, "ingest", "i2")})  # a later failed run moved LATEST
    record(work, "only", [nA], mode="only:ngram")
    plan = plan_gc(work, keep=1)
    reasons = kept_reasons(plan)
    assert reasons[tA.path] == f"upstream of ngram/{nA.key}"
    assert reasons[i1.path] == f"upstream of tokenizer/{tA.key}"
    assert plan.remove == ()


def test_records_from_a_moved_work_dir_still_match(abc, tmp_path):
    work, d = abc
    moved = tmp_path / "elsewhere"
    work.rename(moved)
    plan = plan_gc(moved, keep=1)
    assert {r.path.name for r in plan.remove} == {d["nA"].key, d["nB"].key}


def test_outputs_newer_than_the_last_record_are_kept(abc):
    work, d = abc
    late = commit(work, "ngram", "D", {"tokenizer": d["tB"]})  # a run in progress, not recorded yet
    commit(work, "ngram", "E", {"tokenizer": d["tB"]})  # ... and another one, now LATEST
    future = time.time() + 60
    os.utime(late.path / "manifest.json", (future, future))
    plan = plan_gc(work, keep=1)
    assert kept_reasons(plan)[late.path].startswith("newer than the last run record")
    # nC is no longer LATEST, but run C still uses it
    assert "run-c" in kept_reasons(plan)[d["nC"].path]


def test_without_run_records_nothing_complete_is_removed(tmp_path):
    work = tmp_path / "work"
    i1 = commit(work, "ingest", "i1")
    i2 = commit(work, "ingest", "i2")
    plan = plan_gc(work, keep=3)
    assert plan.remove == () and plan.runs == ()
    assert kept_reasons(plan)[i1.path].startswith("no run record yet")
    assert kept_reasons(plan)[i2.path] == "latest"


def hold_lock(d: StageDir):
    f = open(d.root / f".lock-{d.key}", "a")
    fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    return f


def test_partials_in_progress_untouched_leftovers_removed(abc):
    work, d = abc
    root = d["nA"].root
    busy = StageDir(work, "ngram", "0" * 16)
    busy.partial.mkdir()
    (busy.partial / "checkpoint.pt").write_bytes(b"x" * 50)
    dead = StageDir(work, "ngram", "1" * 16)
    dead.partial.mkdir()
    (dead.partial / "half.bin").write_bytes(b"y" * 70)
    (root / f".lock-{dead.key}").touch()
    trash = root / f".trash-{'2' * 16}-4242"
    trash.mkdir()
    (trash / "old.bin").write_bytes(b"z" * 30)
    stray = root / f".lock-{'3' * 16}"
    stray.touch()
    lock = hold_lock(busy)
    in_use = hold_lock(d["nA"])  # a forced rebuild of nA is running: its directory is not touched
    try:
        plan = plan_gc(work, keep=1)
        by_path = {r.path: r for r in plan.remove}
        assert set(by_path) == {d["nB"].path, dead.partial, trash, stray}
        assert by_path[dead.partial].kind == "partial" and by_path[dead.partial].bytes == 70
        assert by_path[trash].kind == "trash" and by_path[stray].kind == "lock"
        reasons = kept_reasons(plan)
        assert reasons[busy.partial].startswith("in progress")
        assert reasons[d["nA"].path].startswith("in use")
        report = apply_gc(plan)
        assert report.skipped == ()
        assert busy.partial.is_dir() and (busy.partial / "checkpoint.pt").is_file()
        assert d["nA"].is_complete()
        assert not dead.partial.exists() and not trash.exists() and not stray.exists()
        assert not (root / f".lock-{dead.key}").exists()
    finally:
        lock.close()
        in_use.close()


def test_apply_skips_what_became_busy_after_planning(abc):
    work, d = abc
    plan = plan_gc(work, keep=1)
    f = hold_lock(d["nB"])
    try:
        report = apply_gc(plan)
    finally:
        f.close()
    assert [(r.path, why) for r, why in report.skipped] == [(d["nB"].path, "a process is writing this key")]
    assert d["nB"].is_complete() and not d["nA"].path.exists()


def test_prefect_results_follow_their_outputs(abc, tmp_path):
    work, d = abc
    storage = tmp_path / "storage"
    storage.mkdir()

    def result(stage_dir: StageDir, digest: str | None = None) -> Path:
        p = storage / f"arpipe-{stage_dir.stage}-{stage_dir.key}-{(digest or stage_dir.manifest().digest)[:16]}"
        p.write_text('{"result": "..."}')
        return p

    keep_tA, keep_nC = result(d["tA"]), result(d["nC"])
    stale = result(d["tA"], digest="f" * 16)
    gone_nA = result(d["nA"])
    unknown = storage / f"arpipe-ngram-{'9' * 16}-{'8' * 16}"
    unknown.write_text("{}")
    unrelated = storage / "0b5f0c5a8e3c4d1f"
    unrelated.write_text("{}")
    plan = plan_gc(work, keep=1, prefect_storage=storage)
    results = {r.path: r.reason for r in plan.remove if r.kind == "prefect-result"}
    assert set(results) == {stale, gone_nA, unknown}
    assert results[stale].startswith("stale") and results[gone_nA] == "its output is removed"
    apply_gc(plan)
    assert sorted(p.name for p in storage.iterdir()) == sorted([keep_tA.name, keep_nC.name, unrelated.name])


def test_keep_must_be_positive(abc):
    with pytest.raises(ConfigError, match=r"gc --keep 0: keep at least 1 run"):
        plan_gc(abc[0], keep=0)
