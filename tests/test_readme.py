"""The README stays true: its example config validates, its error examples are what the CLI prints."""

import re
from pathlib import Path

from typer.testing import CliRunner

from arcore.config import load_config
from flows.cli import app

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def test_example_config_is_valid(tmp_path):
    block = re.search(r"```toml\n(.*?)```", README, re.S).group(1)
    (tmp_path / "c.toml").write_text(block)
    cfg = load_config(tmp_path / "c.toml")
    assert cfg.models == ["ngram", "rnn", "infinigram"] and cfg.registry.gate == 0.05


def test_error_examples_match_the_cli():
    examples = re.findall(r"^\$ arpipe (run --set \S+)\n(error: .*)$", README, re.M)
    assert len(examples) >= 2
    for command, expected in examples:
        result = CliRunner().invoke(app, command.split())
        assert result.exit_code == 2 and result.output.strip() == expected


def test_every_cli_command_is_documented():
    for command in ("run", "stage", "status", "generate", "score", "ngram", "toy", "serve", "gc"):
        assert re.search(rf"\$A {command}\b", README), command
