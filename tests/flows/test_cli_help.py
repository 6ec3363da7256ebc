"""The CLI's front door: ``--version``, ``-h``, and help that loads no stage library (issue 14 item 8).

Time is not asserted (shared machines); what makes ``--help`` cheap is: it imports neither torch, prefect,
mlflow, pyarrow, numpy nor the config schema. A subprocess runs the real entry point for each.
"""

from __future__ import annotations

import json
import subprocess
import sys
from importlib.metadata import version

import pytest

HEAVY = ("torch", "prefect", "mlflow", "pyarrow", "numpy", "arcore.config")  # typer itself loads pydantic

_PROBE = """
import json, sys
from flows.cli import app
try:
    app(sys.argv[1:], standalone_mode=True)
except SystemExit as e:
    code = e.code
heavy = [m for m in {heavy!r} if m in sys.modules]
print(json.dumps({{"code": code, "heavy": heavy}}), file=sys.stderr)
"""


def _probe(*args: str) -> dict:
    done = subprocess.run([sys.executable, "-c", _PROBE.format(heavy=HEAVY), *args], capture_output=True,
                          text=True, timeout=120)
    return {**json.loads(done.stderr.strip().splitlines()[-1]), "stdout": done.stdout}


def test_version_prints_the_installed_version_and_exits_0():
    for flag in ("--version", "-V"):
        out = subprocess.run([sys.executable, "-m", "flows.cli", flag], capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip() == f"arpipe {version('arpipe')}"


@pytest.mark.parametrize("args", [("-h",), ("--help",), ("run", "-h"), ("ngram", "estimate", "--help"),
                                  ("toy", "binary-addition", "-h"), ("--version",)])
def test_help_and_version_load_no_stage_library(args):
    result = _probe(*args)
    assert result["code"] in (0, None)
    assert result["heavy"] == []
    if args != ("--version",):
        assert "Usage:" in result["stdout"]


def test_toy_option_out_of_range_is_one_line_naming_the_option():
    out = subprocess.run([sys.executable, "-m", "flows.cli", "toy", "binary-addition", "--steps", "0",
                          "--no-track"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == ["error: --steps: Input should be greater than or equal to 1"]


@pytest.mark.parametrize("args, line", [
    (("--strategy", "nucleus"), "error: --strategy 'nucleus': Input should be 'greedy', 'sample', 'top-k', 'top-p' "
                                "or 'beam'"),
    (("--strategy", "sample", "--temperature", "-1"), "error: temperature (--temperature) must be a finite number > 0"),
])
def test_generate_option_errors_name_the_option_and_what_it_allows(args, line, tmp_path):
    out = subprocess.run([sys.executable, "-m", "flows.cli", "generate", "--model", "ngram", *args,
                          "--set", f"work_dir={tmp_path}"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(line) and "pydantic.dev" not in lines[0]


def test_status_loads_neither_torch_prefect_nor_mlflow(tmp_path):
    """``arpipe status`` reads manifests and computes keys: the stage table names each task's module
    instead of importing it, so no torch, prefect or mlflow (the config schema does load numpy/pyarrow)."""
    result = _probe("status", "--json", "--set", f"work_dir={tmp_path / 'work'}")
    assert result["code"] in (0, None), result
    stages = json.loads(result["stdout"])["stages"]
    assert [s["stage"] for s in stages][:3] == ["ingest", "tokenizer", "shards"]
    assert stages[0]["state"] == "missing"
    assert not {"torch", "prefect", "mlflow"} & set(result["heavy"])


def test_every_option_and_argument_has_help():
    """Issue 14 item 8: no option in any command's --help without a line saying what it does."""
    import typer.main

    from flows.cli import app

    def commands(group, path=()):
        for name, cmd in getattr(group, "commands", {}).items():
            if getattr(cmd, "commands", None):
                yield from commands(cmd, (*path, name))
            else:
                yield (*path, name), cmd

    missing = [f"{' '.join(path)} {p.name}" for path, cmd in commands(typer.main.get_command(app))
               for p in cmd.params if p.name != "help" and not getattr(p, "help", None)]
    assert len(list(commands(typer.main.get_command(app)))) >= 10 and missing == []
