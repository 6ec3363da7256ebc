"""The pipeline config: one typed section per stage, defaults in code, a file and ``--set`` on top.

Precedence: defaults < config file (TOML or YAML) < ``--set section.key=value`` overrides. Every value
is validated before any work starts; an error names the key and what is allowed::

    invalid config: ingest.valid_fraction = 1.3: Input should be less than 1

``--set`` values are parsed as YAML scalars/lists (``--set ingest.inputs='[a.txt, b.txt]'``,
``--set rnn.epochs=3``), so numbers and booleans need no quoting.
"""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from typing import Any, Iterable, Literal, Optional

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from arcore.errors import ConfigError
from arcore.compare import EvaluateConfig
from arcore.infinigram.config import InfiniGramConfig
from arcore.ingest.config import IngestConfig
from arcore.ngram.fit import NGramConfig
from arcore.promotion import RegistryConfig
from arcore.rnn.config import RNNConfig
from arcore.shards.config import ShardsConfig
from arcore.tokenize.config import TokenizerConfig
from arcore.transformer.config import TransformerConfig

ModelStage = Literal["ngram", "rnn", "transformer", "infinigram"]


class TrackingConfig(BaseModel):
    """Where runs are recorded. ``uri`` None means ``$MLFLOW_TRACKING_URI`` if set, else a SQLite store
    ``mlflow.db`` in the working directory (MLflow's own default); ``http://...`` talks to a server."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    uri: Optional[str] = None
    experiment: str = Field("arpipe", min_length=1)
    ui_url: str = Field(
        default_factory=lambda: os.environ.get("ARPIPE_MLFLOW_UI_URL") or "http://127.0.0.1:5000",
        description="MLflow UI base, for links in Prefect: where a browser reaches the server, which may differ "
        "from uri (docker-compose.yml sets $ARPIPE_MLFLOW_UI_URL, the default, to its published port)")
    request_timeout_s: int = Field(5, ge=1, le=600)
    request_max_retries: int = Field(1, ge=0, le=10)
    max_logged_model_mb: Optional[int] = Field(
        2048, ge=0, description="a stage whose output exceeds this many MiB logs no generation model (pyfunc) "
        "to MLflow: it would be copied three times (a 5-gram of 1 GB of text is ~16 GB); null: no limit")
    max_artifact_mb: Optional[int] = Field(
        1024, ge=0, description="a stage file over this many MiB is not uploaded to MLflow as an artifact (the "
        "ARPA of a 5-gram of 1 GB of text is 4 GB, a copy per run); it stays in the stage's output directory and "
        "the run's arpipe.artifacts_skipped tag names it; null: no limit")
    tags: dict[str, str] = Field(
        default_factory=dict, description="tags set on every pipeline parent run (`--set tracking.tags.team=lm`), "
        "to filter and group runs in the MLflow UI")


class RunnerSpec(BaseModel):
    """Where stages run their map steps (shard encoding, n-gram counting), parsed from ``runner``:
    ``local`` (in the stage's process), ``dask`` (a local Dask cluster), ``dask://HOST:PORT`` (an
    existing scheduler). Never part of a stage key: every runner writes byte-identical outputs."""

    model_config = ConfigDict(frozen=True)

    dask: bool = False
    address: Optional[str] = None  # tcp://HOST:PORT of an existing scheduler

    @classmethod
    def parse(cls, text: str) -> "RunnerSpec":
        """``"local"`` -> local; ``"dask"`` -> local cluster; ``"dask://10.0.0.5:8786"`` -> tcp://10.0.0.5:8786."""
        if text == "local":
            return cls()
        if text == "dask":
            return cls(dask=True)
        match = re.fullmatch(r"(?:dask|tcp)://([A-Za-z0-9._-]+|\[[0-9A-Fa-f:]+\]):(\d{1,5})", text)
        if match is None or not 0 < int(match.group(2)) < 65536:
            raise ValueError(f"{text!r} is not a runner; use local, dask, or dask://HOST:PORT")
        return cls(dask=True, address=f"tcp://{match.group(1)}:{match.group(2)}")


class PipelineConfig(BaseModel):
    """Everything a pipeline run reads. Stage sections are named after their stages."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    work_dir: str = Field("work", description="stage outputs and Prefect's home; relative to the cwd")
    models: list[ModelStage] = Field(
        default_factory=lambda: ["ngram", "rnn", "infinigram"], min_length=1,
        description="model stages to run; the transformer is opt-in (configs/transformer.toml)")
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    runner: str = Field("local", description="where map steps run: local, dask (a local cluster), "
                                             "or dask://HOST:PORT (an existing scheduler)")
    dask_workers: int = Field(2, ge=1, le=256, description="worker processes of the local cluster (runner dask)")
    ingest: IngestConfig = Field(default_factory=IngestConfig)
    tokenizer: TokenizerConfig = Field(default_factory=TokenizerConfig)
    shards: ShardsConfig = Field(default_factory=ShardsConfig)
    ngram: NGramConfig = Field(default_factory=NGramConfig)
    rnn: RNNConfig = Field(default_factory=RNNConfig)
    transformer: TransformerConfig = Field(default_factory=TransformerConfig)
    infinigram: InfiniGramConfig = Field(default_factory=InfiniGramConfig)
    evaluate: EvaluateConfig = Field(default_factory=EvaluateConfig)
    registry: RegistryConfig = Field(default_factory=RegistryConfig)

    @field_validator("runner")
    @classmethod
    def _runner(cls, value: str) -> str:
        RunnerSpec.parse(value)
        return value

    def runner_spec(self) -> RunnerSpec:
        return RunnerSpec.parse(self.runner)

    def section(self, name: str) -> dict[str, Any]:
        return getattr(self, name).model_dump(mode="json")


def load_config(path: Optional[Path] = None, overrides: Iterable[str] = ()) -> PipelineConfig:
    data: dict[str, Any] = read_config_file(path) if path else {}
    for item in overrides:
        key, value = parse_override(item)
        _set_path(data, key, value)
    return validate_config(data)


def validate_config(data: dict[str, Any]) -> PipelineConfig:
    try:
        return PipelineConfig.model_validate(data)
    except ValidationError as e:
        raise ConfigError(format_validation_error(e, data)) from None


def read_config_file(path: Path) -> dict[str, Any]:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"cannot read config file {path}: {e.strerror or e}") from None
    try:
        if path.suffix.lower() == ".toml":
            data = tomllib.loads(text)
        elif path.suffix.lower() in (".yaml", ".yml"):
            data = yaml.safe_load(text) or {}
        else:
            raise ConfigError(f"config file {path}: use a .toml, .yaml or .yml file")
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as e:
        detail = str(e).replace("\n", " ")
        raise ConfigError(f"config file {path} is not valid {path.suffix[1:].upper()}: {detail}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path}: expected a mapping of sections at the top level")
    return data


def parse_override(item: str) -> tuple[str, Any]:
    """``"ingest.valid_fraction=0.1"`` -> ``("ingest.valid_fraction", 0.1)``."""
    key, sep, raw = item.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise ConfigError(f"--set {item!r}: expected section.key=value")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key, value


def _set_path(data: dict[str, Any], dotted: str, value: Any) -> None:
    node = data
    parts = dotted.split(".")
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"--set {dotted}: {part!r} is a value, not a section")
        node = child
    node[parts[-1]] = value


def format_validation_error(e: ValidationError, data: dict[str, Any]) -> str:
    problems = []
    for err in e.errors():
        loc = ".".join(str(p) for p in err["loc"])
        if err["type"] == "extra_forbidden":
            section = _section_model(err["loc"][:-1])
            allowed = ", ".join(section.model_fields) if section else ""
            problems.append(f"{loc}: unknown key" + (f" (allowed: {allowed})" if allowed else ""))
        else:
            value = f" = {err['input']!r}" if "input" in err and not isinstance(err["input"], dict) else ""
            msg = err["msg"].removeprefix("Value error, ")
            problems.append(f"{loc}{value}: {msg}")
    return "invalid config: " + "; ".join(problems)


def _section_model(loc: tuple) -> Optional[type[BaseModel]]:
    model: Any = PipelineConfig
    for part in loc:
        field = model.model_fields.get(part) if isinstance(part, str) else None
        if field is None or not (isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel)):
            return None
        model = field.annotation
    return model


def config_to_yaml(cfg: PipelineConfig) -> str:
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)
