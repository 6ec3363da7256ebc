"""code_digest: a stage's key follows the library code it runs, and only that code.

The closures are checked by name (the shards stage reads the tokenizer's store but no model code; the
n-gram stage no neural code), then a copy of the project is edited and the digests recomputed in a
subprocess: an edit to the RNN trainer changes the RNN stage's digest and leaves the n-gram and shards
stages' alone; an edit to the shard writer changes the shards stage's.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from arcore.provenance import code_digest, code_files

ROOT = Path(__file__).resolve().parents[2]
STAGE_TASKS = ["tasks.shards", "tasks.ngram", "tasks.rnn", "tasks.evaluate"]


def names(module: str) -> set[str]:
    return {p.relative_to(ROOT / "arcore").as_posix() for p in code_files(module)}


def test_closures_follow_what_each_stage_imports():
    shards, ngram, rnn, evaluate = (names(m) for m in STAGE_TASKS)
    assert {"shards/build.py", "shards/writer.py", "shards/encode.py", "tokenize/store.py", "stage.py",
            "__init__.py"} <= shards
    assert not any(n.startswith(("ngram/", "rnn/", "transformer/", "decode/")) for n in shards)
    assert {"ngram/counts.py", "ngram/kneser_ney.py", "ngram/stage.py", "shards/reader.py", "evaluate.py"} <= ngram
    assert not any(n.startswith(("rnn/", "transformer/")) for n in ngram)
    assert {"rnn/train.py", "rnn/model.py", "rnn/stage.py"} <= rnn and not any(n.startswith("ngram/") for n in rnn)
    assert {"ngram/stage.py", "rnn/stage.py", "transformer/stage.py", "compare.py", "decode/sampling.py"} <= evaluate
    assert "config.py" not in shards | ngram | rnn | evaluate  # settings enter keys through config sections
    assert "ngram/text.py" not in ngram  # the ngram CLI's text reader is not part of the stage


def digests_in(root: Path) -> dict[str, str]:
    code = ("import json, arcore; from arcore.provenance import code_digest; "
            f"assert arcore.__file__.startswith({str(root)!r}), arcore.__file__; "
            f"print(json.dumps({{m: code_digest(m) for m in {STAGE_TASKS!r}}}))")
    out = subprocess.run([sys.executable, "-c", code], cwd=root, env={"PYTHONPATH": str(root), "PATH": "/usr/bin"},
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_an_edit_changes_the_digest_of_the_stages_that_run_it_only(tmp_path):
    for package in ("arcore", "tasks"):
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    before = digests_in(tmp_path)
    assert before == {m: code_digest(m) for m in STAGE_TASKS}  # the digest does not depend on where the tree is

    with open(tmp_path / "arcore" / "rnn" / "train.py", "a") as f:
        f.write("\n# a change to the trainer\n")
    after_rnn = digests_in(tmp_path)
    changed = {m for m in STAGE_TASKS if after_rnn[m] != before[m]}
    assert changed == {"tasks.rnn", "tasks.evaluate"}

    with open(tmp_path / "arcore" / "shards" / "writer.py", "a") as f:
        f.write("\n# a change to the shard writer\n")
    after_shards = digests_in(tmp_path)
    assert after_shards["tasks.shards"] != after_rnn["tasks.shards"]
    assert after_shards["tasks.ngram"] == after_rnn["tasks.ngram"]  # it reads shards, it does not write them


def test_the_digest_is_fixed_for_the_life_of_a_process(tmp_path):
    """An edit on disk after a process computed a key does not change that process's keys: it runs the
    code it loaded. The next process sees the edit (the test above)."""
    for package in ("arcore", "tasks"):
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    code = ("import json; from pathlib import Path; from arcore.provenance import code_digest; "
            "a = code_digest('tasks.rnn'); "
            "open(Path('arcore/rnn/train.py'), 'a').write('\\n# edited while running\\n'); "
            "print(json.dumps([a, code_digest('tasks.rnn')]))")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin"},
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    first, again = json.loads(out.stdout)
    assert first == again
    assert digests_in(tmp_path)["tasks.rnn"] != first
