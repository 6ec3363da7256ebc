"""Config: defaults, files, --set overrides, and refusals that name the key and what is allowed."""

import pytest

from arcore.config import PipelineConfig, load_config, parse_override
from arcore.errors import ConfigError


def test_defaults_are_valid():
    cfg = load_config()
    assert cfg == PipelineConfig()
    assert cfg.ingest.unit == "paragraph" and cfg.work_dir == "work"


def test_toml_and_yaml_files_then_overrides(tmp_path):
    toml = tmp_path / "c.toml"
    toml.write_text('work_dir = "w"\n[ingest]\nunit = "line"\nvalid_fraction = 0.2\n')
    cfg = load_config(toml, ["ingest.valid_fraction=0.3", "tracking.experiment=exp"])
    assert (cfg.work_dir, cfg.ingest.unit, cfg.ingest.valid_fraction, cfg.tracking.experiment) == ("w", "line", 0.3, "exp")
    yml = tmp_path / "c.yaml"
    yml.write_text("ingest:\n  inputs: [a.txt, {path: b.txt, split: valid}]\n")
    cfg = load_config(yml)
    assert [s.path for s in cfg.ingest.input_specs] == ["a.txt", "b.txt"]
    assert cfg.ingest.input_specs[1].split == "valid"


def test_set_parses_yaml_values():
    assert parse_override("rnn.epochs=3") == ("rnn.epochs", 3)
    assert parse_override("a.b=[x, y]") == ("a.b", ["x", "y"])
    assert parse_override("a.b=true") == ("a.b", True)
    assert parse_override("a.b=") == ("a.b", "")


@pytest.mark.parametrize(
    "override, message",
    [
        ("ingest.valid_fraction=1.3", "invalid config: ingest.valid_fraction = 1.3: Input should be less than 1"),
        ("ingest.unit=word", "ingest.unit = 'word': Input should be 'line', 'paragraph' or 'file'"),
        ("ingest.nope=1", "ingest.nope: unknown key (allowed: inputs, unit,"),
        ("nope.x=1", "nope: unknown key (allowed: " + ", ".join(PipelineConfig.model_fields)),
        ("ingest.valid_fraction=abc", "ingest.valid_fraction = 'abc': Input should be a valid number"),
        ("tracking.request_timeout_s=0", "tracking.request_timeout_s = 0: Input should be greater than or equal to 1"),
        ("noequals", "--set 'noequals': expected section.key=value"),
    ],
)
def test_invalid_values_are_refused_with_the_key(override, message):
    with pytest.raises(ConfigError) as e:
        load_config(overrides=[override])
    assert message in str(e.value)
    assert "\n" not in str(e.value)


def test_fractions_must_leave_a_train_split():
    with pytest.raises(ConfigError, match=r"ingest: valid_fraction \+ test_fraction must be < 1"):
        load_config(overrides=["ingest.valid_fraction=0.6", "ingest.test_fraction=0.5"])


def test_bad_files(tmp_path):
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[ingest\n")
    with pytest.raises(ConfigError, match="is not valid TOML"):
        load_config(bad)
    other = tmp_path / "c.ini"
    other.write_text("")
    with pytest.raises(ConfigError, match="use a .toml, .yaml or .yml file"):
        load_config(other)


@pytest.mark.parametrize("text, dask, address", [
    ("local", False, None), ("dask", True, None), ("dask://127.0.0.1:8786", True, "tcp://127.0.0.1:8786"),
    ("dask://scheduler.internal:8786", True, "tcp://scheduler.internal:8786"), ("tcp://10.0.0.5:1", True, "tcp://10.0.0.5:1"),
])
def test_runner_spec(text, dask, address):
    spec = load_config(overrides=[f"runner={text}"]).runner_spec()
    assert (spec.dask, spec.address) == (dask, address)


@pytest.mark.parametrize("text", ["threads", "dask://", "dask://host", "dask://host:0", "dask://host:70000", "http://h:1"])
def test_bad_runner_names_the_choices(text):
    with pytest.raises(ConfigError, match="use local, dask, or dask://HOST:PORT"):
        load_config(overrides=[f"runner={text}"])


def test_runner_is_not_part_of_any_stage_key():
    """Every runner writes byte-identical outputs, so switching runners reuses them."""
    local, dask = load_config(), load_config(overrides=["runner=dask", "dask_workers=8"])
    sections = ["ingest", "tokenizer", "shards", "ngram", "rnn", "transformer", "evaluate"]
    assert all(local.section(name) == dask.section(name) for name in sections)
