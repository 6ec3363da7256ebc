"""The stage contract: keys, manifests written last, atomic commit, incomplete output never 'done'."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from arcore.errors import StageError
from arcore.stage import MANIFEST, StageDir, StageOutput, build, latest, require_latest, stage_key


def test_key_depends_on_name_config_upstream_version():
    base = stage_key("s", {"a": 1}, {"up": "d1"}, "1")
    assert base == stage_key("s", {"a": 1}, {"up": "d1"}, "1")
    assert len({base, stage_key("t", {"a": 1}, {"up": "d1"}, "1"), stage_key("s", {"a": 2}, {"up": "d1"}, "1"),
                stage_key("s", {"a": 1}, {"up": "d2"}, "1"), stage_key("s", {"a": 1}, {"up": "d1"}, "2")}) == 5


def write_two(out: Path) -> StageOutput:
    (out / "a.txt").write_text("alpha")
    (out / "b.txt").write_text("beta")
    return StageOutput(metrics={"m": 1.5}, records={"rows": 2}, artifacts=("a.txt",))


def test_build_commits_with_manifest(tmp_path):
    d = StageDir(tmp_path, "s", "k1")
    m = build(d, write_two, config={"x": 1}, upstream={"up": "u"}, produced_by={"mlflow_run_id": "r"})
    assert d.is_complete() and not d.partial.exists()
    on_disk = json.loads((d.path / MANIFEST).read_text())
    assert on_disk["files"]["a.txt"]["bytes"] == 5 and on_disk["records"] == {"rows": 2}
    assert on_disk["config"] == {"x": 1} and on_disk["upstream"] == {"up": "u"}
    assert m.digest == on_disk["digest"]
    assert latest(tmp_path, "s") == d
    # same content -> same digest, whatever the timings
    m2 = build(d, write_two, config={"x": 1}, upstream={"up": "u"}, produced_by={})
    assert m2.digest == m.digest


def test_incomplete_outputs_are_not_done(tmp_path):
    d = StageDir(tmp_path, "s", "k1")
    d.path.mkdir(parents=True)
    (d.path / "a.txt").write_text("alpha")
    assert not d.is_complete()  # no manifest
    build(d, write_two, config={}, upstream={}, produced_by={})
    (d.path / "b.txt").unlink()
    assert not d.is_complete()  # a listed file is gone
    (d.path / MANIFEST).write_text("{not json")
    assert not d.is_complete()
    with pytest.raises(StageError, match="no complete output of stage 'other'"):
        require_latest(tmp_path, "other")


def test_failed_compute_leaves_previous_output(tmp_path):
    d = StageDir(tmp_path, "s", "k1")
    build(d, write_two, config={}, upstream={}, produced_by={})

    def boom(out):
        (out / "a.txt").write_text("half")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        build(d, boom, config={}, upstream={}, produced_by={})
    assert d.is_complete() and (d.path / "a.txt").read_text() == "alpha"
    # the leftover partial dir is wiped by the next build of a non-resumable stage
    build(d, write_two, config={}, upstream={}, produced_by={})
    assert not (d.partial / "a.txt").exists()


def test_sigkill_mid_stage_leaves_nothing_complete(tmp_path):
    script = (
        "import sys, time\nfrom pathlib import Path\nfrom arcore.stage import StageDir, StageOutput, build\n"
        "def slow(out):\n    (out / 'a.txt').write_text('x'); print('started', flush=True); time.sleep(60)\n"
        "    return StageOutput()\n"
        f"build(StageDir(Path({str(tmp_path)!r}), 's', 'k'), slow, config={{}}, upstream={{}}, produced_by={{}})\n"
    )
    p = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
                         env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])})
    assert p.stdout.readline().strip() == "started"
    p.send_signal(signal.SIGKILL)
    p.wait()
    d = StageDir(tmp_path, "s", "k")
    assert not d.is_complete() and not d.path.exists() and latest(tmp_path, "s") is None


def test_config_differences_hand_worked():
    from arcore.stage import config_differences

    assert config_differences({"vocab_size": 4096, "kind": "bpe"}, {"vocab_size": 800, "kind": "bpe"}) == [
        "vocab_size: 4096 -> 800"]
    assert config_differences({"a": {"b": 1, "c": 2}}, {"a": {"b": 1, "c": 3}, "d": True}) == [
        "a.c: 2 -> 3", "d: None -> True"]
    assert config_differences({"x": [1, 2]}, {"x": [1, 2]}) == []
