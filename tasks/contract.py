"""The stage contract as Prefect sees it: context in, result out; the manifest, not Prefect, is the cache.

The flow computes each stage's key (``arcore.stage.stage_key``) and hands the task a ``StageContext``.
The task body reuses the output when its manifest for that key is complete (``run_stage``): the manifest
is the record of a stage's result, and nothing else is.

Prefect persists no stage result and caches none (``stage_task``): its result files are read back with
the serializer the *file* names, cloudpickle included, so a crafted file under ``$PREFECT_HOME/storage``
would run code on the next run (issue 17), and they held absolute paths, so a moved work dir broke. A
reused stage still shows as ``Cached`` in the Prefect UI: the task returns that state itself, from the
manifest (``stage_task``); the run summary and the MLflow child run (``cached=true``) say so too.
"""

from __future__ import annotations

import errno
import functools
import logging
import time
from pathlib import Path
from typing import Any, Callable, Optional

from pydantic import BaseModel

from arcore.errors import StageError
from arcore.io import atomic_write_text
from arcore.stage import (LATEST, Manifest, Progress, StageDir, StageOutput, build, damaged_file, latest,
                          wait_for_writer)
from tasks.progress import stage_progress


class StageRef(BaseModel):
    """A complete stage output that a downstream stage reads."""

    stage: str
    key: str
    path: str
    digest: str


class StageContext(BaseModel):
    stage: str
    key: str
    work_dir: str
    config: dict[str, Any]
    upstream: dict[str, StageRef]
    upstream_digests: dict[str, str]
    force: bool = False
    mlflow_run_id: Optional[str] = None
    flow_run_id: Optional[str] = None
    tracking: dict[str, Any] = {}  # the tracking section, for stages that log while they run

    @property
    def dir(self) -> StageDir:
        return StageDir(Path(self.work_dir), self.stage, self.key)

    def upstream_path(self, stage: str) -> Path:
        return Path(self.upstream[stage].path)


class StageResult(BaseModel):
    stage: str
    key: str
    state: str  # "completed" | "cached" | "failed"
    seconds: float
    output_dir: str
    digest: str
    metrics: dict[str, float]
    records: dict[str, int]
    artifacts: list[str]
    produced_by: dict[str, Optional[str]]

    def ref(self) -> StageRef:
        return StageRef(stage=self.stage, key=self.key, path=self.output_dir, digest=self.digest)


def _metrics_artifact(result: StageResult) -> None:
    """The stage's metrics and records as a table artifact of its task run (the Prefect UI's Artifacts
    tab; key ``<stage>-metrics``, so each stage's latest table is one click away). Best effort: the API
    is a side channel (tasks/progress.py)."""
    from prefect.artifacts import create_table_artifact

    rows = [{"name": k, "value": v} for k, v in sorted(result.metrics.items())]
    rows += [{"name": k, "value": v} for k, v in sorted(result.records.items())]
    if not rows:
        return
    try:
        create_table_artifact(table=rows, key=f"{result.stage}-metrics",
                              description=f"{result.stage} {result.key}: {result.state}")
    except Exception as exc:
        logging.getLogger("arpipe").warning("%s: its metrics table did not reach the Prefect API (%s)",
                                            result.stage, type(exc).__name__)


def stage_task(name: str):
    """The Prefect ``@task`` of a stage: no persisted result and no Prefect cache (see the module docstring).

    Its task runs are named by stage and key (``rnn bb4f1e7325770244``, the output's directory name) and
    tagged with the stage. A result the task reused from its manifest ends the task run in a Completed state
    named ``Cached``, every time the output is reused: the state is the manifest's verdict, carried out of
    the task as the state it returns, with the result as its data."""
    from prefect import task
    from prefect.cache_policies import NO_CACHE

    def decorate(fn: Callable[[StageContext], StageResult]):
        @functools.wraps(fn)
        def body(ctx: StageContext):
            result = fn(ctx)
            _metrics_artifact(result)
            if result.state != "cached":
                return result
            from prefect.states import Completed

            return Completed(name="Cached", data=result, message=f"reused {result.output_dir}")

        return task(name=name, task_run_name=f"{name} {{ctx.key}}", tags=[name], cache_policy=NO_CACHE,
                    persist_result=False)(body)

    return decorate


def _build_reporting_full_disk(ctx: StageContext, d: StageDir, compute: Callable[[Path], StageOutput],
                              **kw) -> "Manifest":
    """``build``, with a full disk (ENOSPC, EDQUOT) said in one line that names where: committed outputs
    are untouched (a build writes only its ``.partial-<key>``), so freeing space and rerunning continues."""
    try:
        return build(d, compute, **kw)
    except OSError as e:
        if e.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        what = f" writing {e.filename}" if e.filename else ""
        raise StageError(
            f"no space left on the device of {d.root} during stage {ctx.stage}{what}; committed outputs are "
            f"intact and the partial build is in {d.partial}: free space (`arpipe gc --keep N`) or set "
            "work_dir on a bigger disk, then rerun") from None


def run_stage(
    ctx: StageContext,
    compute: Callable[[Path, Progress], StageOutput],
    *,
    resumable: bool = False,
) -> StageResult:
    """Reuse the complete output for ``ctx.key`` or build it; ``ctx.force`` always builds."""
    t0 = time.perf_counter()
    d = ctx.dir
    manifest = None if ctx.force else d.manifest()
    if manifest is None and not ctx.force and wait_for_writer(d, lambda: logging.getLogger("arpipe").warning(
            "%s: output %s is being built by another run; waiting for it to reuse it", ctx.stage, ctx.key)):
        manifest = d.manifest()  # None if that run failed or was killed: build it here
    if manifest is not None:
        problem = damaged_file(d, manifest)
        if problem is not None:  # a reused output is read as it was committed, or rebuilt
            logging.getLogger("arpipe").warning("%s: output %s is damaged (%s); rebuilding it", ctx.stage,
                                                ctx.key, problem)
            manifest = None
        elif latest(Path(ctx.work_dir), ctx.stage) is None:  # LATEST dangling (its output removed): repair
            atomic_write_text(d.root / LATEST, d.key + "\n")
    state = "cached"
    if manifest is None:
        progress = stage_progress(ctx.stage)
        try:
            manifest = _build_reporting_full_disk(
                ctx, d,
                lambda out_dir: compute(out_dir, progress),
                config=ctx.config,
                upstream=ctx.upstream_digests,
                produced_by={"mlflow_run_id": ctx.mlflow_run_id, "prefect_flow_run_id": ctx.flow_run_id},
                resumable=resumable,
            )
        finally:
            progress.close()
        state = "completed"
    return StageResult(
        stage=ctx.stage, key=ctx.key, state=state, seconds=time.perf_counter() - t0,
        output_dir=str(d.path), digest=manifest.digest, metrics=dict(manifest.metrics),
        records=dict(manifest.records), artifacts=list(manifest.artifacts),
        produced_by=dict(manifest.produced_by),
    )


def run_training_stage(ctx: StageContext, build: Callable[..., StageOutput]) -> StageResult:
    """A resumable neural training stage whose per-step and per-epoch figures stream to its MLflow run.

    ``build(tokenizer_dir, shards_dir, out_dir, progress, on_step=..., on_epoch=...)`` is the stage's
    ``arcore`` function with its config bound. Epoch figures (``epoch.valid_loss``, ...) and ``epoch`` itself
    are logged at the global step that ended the epoch, the step axis of the per-step ``loss``, so the UI
    overlays valid loss on the training curve."""
    from arcore.config import TrackingConfig
    from tasks.tracking import MetricBuffer, Tracker

    tracker = Tracker(TrackingConfig.model_validate(ctx.tracking)) if ctx.mlflow_run_id else None
    tokenizer_dir, shards_dir = ctx.upstream_path("tokenizer"), ctx.upstream_path("shards")

    def compute(out_dir: Path, progress: Progress) -> StageOutput:
        steps = MetricBuffer(tracker, ctx.mlflow_run_id)
        epochs = MetricBuffer(tracker, ctx.mlflow_run_id, every=1)
        last_step = [0]  # the trainer calls on_step for every step, and on_epoch after the epoch's last one

        def on_step(step: int, metrics: dict) -> None:
            last_step[0] = step
            steps.add(step, metrics)

        def on_epoch(epoch: int, metrics: dict) -> None:
            epochs.add(last_step[0], {"epoch": epoch, **{f"epoch.{k}": v for k, v in metrics.items()}})

        try:
            return build(tokenizer_dir, shards_dir, out_dir, progress, on_step=on_step, on_epoch=on_epoch)
        finally:  # never raises: a tracking store that went away must not cost the trained model
            steps.flush(final=True)
            epochs.flush(final=True)
            lost = [b.failure for b in (steps, epochs) if b.failure]
            if lost:
                from prefect import get_run_logger

                get_run_logger().warning("%s: %d training figures could not be logged to MLflow (%s)", ctx.stage,
                                         len(steps.pending) + len(epochs.pending), lost[0])

    return run_stage(ctx, compute, resumable=True)
