"""The stage table: what runs, in which order, reading which config section and which upstream outputs.

To add a stage: write ``arcore`` code and a task in ``tasks/``, then add one ``Stage`` row here. Keys,
caching, MLflow child runs, ``arpipe stage NAME`` and ``arpipe status`` follow from the row.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from arcore.config import PipelineConfig
from arcore.ingest import inputs_digest
from arcore.io import DigestCache
from arcore.provenance import code_digest
from arcore.stage import StageDir, stage_key
from flows import stage_names
from tasks.contract import StageContext, StageRef


@dataclass(frozen=True)
class Stage:
    """One stage; its Prefect task is ``tasks.<name>.<name>``, imported only when it runs (``arpipe status``
    and keys need only the module's name: no prefect, torch or mlflow import)."""

    name: str
    upstream: tuple[str, ...] = ()
    # digests of what the stage reads from outside the work dir (input files), if anything
    external: Optional[Callable[[PipelineConfig], dict[str, str]]] = None
    # models this stage trains, logged to its MLflow run as generation pyfuncs when it computes
    exports: tuple[str, ...] = ()
    # a model stage: runs only when listed in the config's ``models``; downstream stages read it if it ran
    model: bool = False

    @property
    def module(self) -> str:
        return f"tasks.{self.name}"

    @property
    def task(self):
        """The stage's prefect Task, taking ``ctx: StageContext``."""
        return getattr(importlib.import_module(self.module), self.name)

    def selected(self, cfg: PipelineConfig) -> bool:
        return not self.model or self.name in cfg.models


def _ingest_inputs(cfg: PipelineConfig) -> dict[str, str]:
    return {"inputs": inputs_digest(cfg.ingest, DigestCache(Path(cfg.work_dir) / ".digests.json"))}


STAGES: tuple[Stage, ...] = (
    Stage("ingest", external=_ingest_inputs),
    Stage("tokenizer", upstream=("ingest",)),
    Stage("shards", upstream=("ingest", "tokenizer")),
    Stage("ngram", upstream=("tokenizer", "shards"), exports=("histogram", "ngram"), model=True),
    Stage("rnn", upstream=("tokenizer", "shards"), exports=("rnn",), model=True),
    Stage("transformer", upstream=("tokenizer", "shards"), exports=("transformer",), model=True),
    Stage("infinigram", upstream=("tokenizer", "shards"), exports=("infinigram",), model=True),
    # exports the best mixture of the models it read (its parts' files travel in the bundle)
    Stage("evaluate", upstream=("tokenizer", "shards", "ngram", "rnn", "transformer", "infinigram"),
          exports=("mixture",)),
)
STAGE_NAMES = tuple(s.name for s in STAGES)
assert STAGE_NAMES == stage_names.STAGE_NAMES, "flows/stage_names.py lists the stages of this table, in order"


def get_stage(name: str) -> Stage:
    for s in STAGES:
        if s.name == name:
            return s
    from arcore.errors import ConfigError

    raise ConfigError(f"unknown stage {name!r}; stages are: {', '.join(STAGE_NAMES)}")


def make_context(stage: Stage, cfg: PipelineConfig, upstream: dict[str, StageRef], **extra) -> StageContext:
    """The stage's key from its config section, its upstream output digests, the library code its task
    runs (``arcore.provenance.code_digest``) and the library version."""
    section = cfg.section(stage.name)
    digests = {name: ref.digest for name, ref in upstream.items()}
    digests["code"] = code_digest(stage.module)
    if stage.external:
        digests.update(stage.external(cfg))
    key = stage_key(stage.name, section, digests)
    return StageContext(
        stage=stage.name, key=key, work_dir=str(Path(cfg.work_dir).resolve()), config=section,
        upstream=upstream, upstream_digests=digests, tracking=cfg.tracking.model_dump(mode="json"), **extra,
    )


def upstream_names(stage: Stage, cfg: PipelineConfig) -> tuple[str, ...]:
    """The upstream stages ``stage`` reads under ``cfg``: model stages only when they are selected."""
    return tuple(u for u in stage.upstream if get_stage(u).selected(cfg))


def stage_status(cfg: PipelineConfig) -> list[dict]:
    """Per stage: is its output for this config complete, and where (without running anything)."""
    rows, refs = [], {}
    for stage in STAGES:
        if not stage.selected(cfg):
            rows.append({"stage": stage.name, "state": "off", "output_dir": None, "detail": "not in models"})
            continue
        if any(u not in refs for u in upstream_names(stage, cfg)):
            rows.append({"stage": stage.name, "state": "blocked", "output_dir": None,
                         "detail": "upstream output missing for this config"})
            continue
        ctx = make_context(stage, cfg, {u: refs[u] for u in upstream_names(stage, cfg)})
        d: StageDir = ctx.dir
        m = d.manifest()
        if m is None:
            rows.append({"stage": stage.name, "state": "missing", "output_dir": str(d.path), "detail": ""})
            continue
        refs[stage.name] = StageRef(stage=stage.name, key=d.key, path=str(d.path), digest=m.digest)
        rows.append({"stage": stage.name, "state": "complete", "output_dir": str(d.path),
                     "detail": f"{m.seconds:.1f}s, {', '.join(f'{k}={v}' for k, v in m.records.items())}"})
    return rows


def default_stage_names() -> tuple[str, ...]:
    """The stages a default config runs (model stages not in the default ``models`` are off)."""
    cfg = PipelineConfig()
    return tuple(s.name for s in STAGES if s.selected(cfg))
