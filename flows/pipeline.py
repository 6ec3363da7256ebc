"""The pipeline flow: ingest -> tokenizer -> shards -> models -> evaluate -> register.

Reads like a table of contents: for each stage in ``flows.stages.STAGES``, build its context (key from
config and upstream digests), run its task (which reuses the key's output when it is complete), and
record it under the pipeline's MLflow parent run. Then the newly trained models are
registered and the ``champion`` alias moves if they win (``tasks/register.py``); what is registered
already, not whether this run computed it, decides. Last, the parent run gets the run's headline
(``tasks.tracking.headline``: every model's bits per byte and perplexities, stage seconds, data sizes)
and ``summary.md``.

Modes
- default: every stage, each reused when its output for the current config exists (``cached``)
- ``rerun_from=STAGE``: STAGE and every later stage are recomputed, earlier ones reused
- ``only=STAGE``: exactly STAGE is recomputed, on the latest committed outputs of its upstream stages
  (no registration: the run does not cover the data and tokenizer the registry tags need)
"""

# No ``from __future__ import annotations``: Prefect builds the flow's parameter schema (the UI form)
# and served runs rebuild it from the real annotation objects.
import tempfile
import time
from pathlib import Path
from typing import Optional

from prefect import flow, get_run_logger
from prefect.artifacts import create_link_artifact, create_markdown_artifact
from prefect.exceptions import TerminationSignal
from prefect.runtime import deployment, flow_run

from arcore.config import PipelineConfig, config_to_yaml
from arcore.datasets import stage_datasets
from arcore.errors import ConfigError, GateFailed, exception_chain
from arcore.generate import export_bundle, exportable
from arcore.io import atomic_write_text
from arcore.report import build_report
from arcore.retention import hold_for_run, release_setup
from arcore.runs import record_run
from arcore.stage import config_differences, require_latest
from flows.logs import quiet_user_errors
from flows.prefect_api import api_lost, api_url, lost_api
from flows.stages import STAGE_NAMES, STAGES, Stage, get_stage, make_context, upstream_names
from tasks.contract import StageRef, StageResult
from tasks.fanout import fan_out
from tasks.register import register, unregistered
from tasks.tracking import Tracker


@flow(name="arpipe", log_prints=True, validate_parameters=True)
def pipeline(
    config: PipelineConfig = PipelineConfig(),
    rerun_from: Optional[str] = None,
    only: Optional[str] = None,
) -> dict:
    """Run the arpipe pipeline; returns the run summary (also printed by ``arpipe --json``)."""
    with hold_for_run(Path(config.work_dir)):  # `arpipe gc` removes nothing while a run is in progress
        return _pipeline(config, rerun_from, only)


def _pipeline(config: PipelineConfig, rerun_from: Optional[str], only: Optional[str]) -> dict:
    quiet_user_errors()
    for name in (rerun_from, only):
        if name is not None and not get_stage(name).selected(config):
            raise ConfigError(f"stage {name!r} is a model stage not listed in models {config.models}; add it")
    tracker = Tracker(config.tracking)
    tracker.check()
    release_setup()  # the Prefect API is up and the MLflow store set up: another run may start its own
    tracker.end_orphaned_runs()  # runs a SIGKILLed arpipe process left RUNNING
    flow_run_id, flow_run_name = flow_run.get_id(), flow_run.get_name()
    mode = f"only:{only}" if only else f"from:{rerun_from}" if rerun_from else "run"
    parent = tracker.start_pipeline_run(config, flow_run_id, flow_run_name, mode,
                                        scheduled=deployment.get_id() is not None)
    results: list[dict] = []
    # what a failure leaves for `arpipe run --json`: the stages so far, carried on the exception
    summary = {"flow_run_id": flow_run_id, "mlflow_run_id": parent, "runner": config.runner, "stages": results,
               "registry": []}
    try:
        with fan_out(flow_run_id, config):  # a Dask cluster for map steps, when config.runner asks for one
            refs: dict[str, StageRef] = {}
            force_from = STAGE_NAMES.index(rerun_from) if rerun_from else len(STAGES)
            for i, stage in enumerate(STAGES):
                if (only and stage.name != only) or not stage.selected(config):
                    continue
                upstream = {u: _latest_ref(config, u) if only else refs[u] for u in upstream_names(stage, config)}
                result = _run_stage(stage, config, tracker, parent, upstream, results,
                                    force=bool(only) or i >= force_from, flow_run_id=flow_run_id)
                refs[stage.name] = result.ref()
        if config.registry.enabled and not only:
            summary["registry"] = register(config.registry, tracker, parent, results, {
                name: refs[name].digest for name in ("ingest", "tokenizer")}, refs["ingest"].path)
    except (KeyboardInterrupt, TerminationSignal, SystemExit) as e:
        tracker.end_open_runs("KILLED")
        setattr(e, SUMMARY, summary)
        raise
    except BaseException as e:
        tracker.end_open_runs("FAILED")
        setattr(e, SUMMARY, summary)
        raise
    decisions = summary["registry"]
    tracker.log_headline(parent, results, {alias: refs[stage].digest for alias, stage in
                                           (("data", "ingest"), ("tokenizer", "tokenizer")) if stage in refs})
    gate = [d for d in decisions if d["gate_failed"]]
    tracker.client.set_tag(parent, "arpipe.gate", "failed" if gate else "passed")
    tracker.end_run(parent, "FAILED" if gate else "FINISHED")
    record = record_run(config.work_dir, summary, mode)
    _publish(tracker, parent, summary)
    _report(tracker, parent, config, summary, record)
    if gate:
        failed = GateFailed("evaluation gate failed: " + "; ".join(f"{d['model']}: {d['reason']}" for d in gate))
        setattr(failed, SUMMARY, summary)
        raise failed
    return summary


SUMMARY = "arpipe_summary"  # the attribute of a failed run's exception that holds its summary so far


def failed_summary(exc: BaseException) -> Optional[dict]:
    """The summary a failed pipeline run left on its exception: the stages that finished and the one that
    failed (``state: failed``); None when it failed before its MLflow run existed. Looked up along the
    exceptions ``exc`` was raised while handling too: SIGTERM reaches the CLI as a new exception raised
    inside Prefect's handling of the flow's."""
    return next((getattr(e, SUMMARY) for e in exception_chain(exc) if hasattr(e, SUMMARY)), None)


def _run_stage(stage: Stage, config: PipelineConfig, tracker: Tracker, parent: str, upstream: dict[str, StageRef],
               results: list[dict], *, force: bool, flow_run_id: Optional[str]) -> StageResult:
    """One stage: its MLflow child run, its task (cached or computed), its models, its summary row."""
    child = tracker.start_stage_run(parent, stage.name, config.section(stage.name))
    # the splits it reads, as the run's dataset inputs: known before it runs, so a failed stage has them too
    tracker.log_datasets(child, stage_datasets(stage.name, {u: Path(ref.path) for u, ref in upstream.items()}))
    ctx = make_context(stage, config, upstream, force=force, mlflow_run_id=child, flow_run_id=flow_run_id)
    t0 = time.perf_counter()
    try:
        state = stage.task(ctx, return_state=True)
    except Exception as e:  # the task engine reports states to the API: its going away surfaces here
        if not lost_api(e):
            raise
        committed = [str(ctx.dir.path)] if ctx.dir.manifest() is not None else []
        raise api_lost(api_url(), stage.name, committed) from None
    if state.is_failed():
        results.append({"stage": stage.name, "state": "failed", "seconds": time.perf_counter() - t0,
                        "output_dir": str(ctx.dir.path), "metrics": {}, "mlflow_run_id": child})
        state.result()  # raises the stage's exception
    result: StageResult = state.result()
    cached = state.name == "Cached" or result.state == "cached"
    result = result.model_copy(update={"state": "cached" if cached else "completed",
                                       "seconds": time.perf_counter() - t0})
    try:  # the outputs are committed: a store that stops answering now costs a rerun's logging, not them
        _log_stage(stage, config, tracker, child, upstream, result, cached)
    except Exception:
        if tracker.answers():
            raise
        raise tracker.lost(stage.name, result.output_dir) from None
    results.append({"stage": result.stage, "state": result.state, "seconds": round(result.seconds, 3),
                    "output_dir": result.output_dir, "metrics": result.metrics, "mlflow_run_id": child})
    return result


def _log_stage(stage: Stage, config: PipelineConfig, tracker: Tracker, child: str, upstream: dict[str, StageRef],
               result: StageResult, cached: bool) -> None:
    """The stage's MLflow child run: its generation models (when it computed them, or while the registry
    lacks them: a run killed before registering), then metrics, manifest and artifacts."""
    if stage.exports and (not cached or unregistered(config.registry, tracker, {
            "stage": result.stage, "output_dir": result.output_dir})):
        shipped = shipped_dirs(stage, upstream, Path(result.output_dir))
        size_mb = sum(f.stat().st_size for d in shipped for f in d.rglob("*") if f.is_file()) / 2 ** 20
        limit = config.tracking.max_logged_model_mb
        if limit is None or size_mb <= limit:
            _log_generators(tracker, child, stage.exports, upstream, result)
        else:
            get_run_logger().warning(
                "%s: not logging its generation models to MLflow: the output (with a mixture's parts) is %.0f "
                "MiB, over tracking.max_logged_model_mb=%d; they stay in %s", stage.name, size_mb, limit,
                ", ".join(map(str, shipped)))
            tracker.client.set_tag(child, "arpipe.models_not_logged",
                                   f"output {size_mb:.0f} MiB > tracking.max_logged_model_mb={limit}")
    tracker.finish_stage_run(child, result, cached=cached)


def shipped_dirs(stage: Stage, upstream: dict[str, StageRef], output_dir: Path) -> list[Path]:
    """The stage outputs whose files the stage's generation models ship: its own, and for a stage that
    exports a mixture (evaluate), its upstream model stages' too (a mixture's bundle holds its parts)."""
    shipped = [Path(output_dir)]
    if any(name.startswith("mixture") for name in stage.exports):
        shipped += [Path(ref.path) for u, ref in upstream.items() if u not in ("ingest", "tokenizer", "shards")]
    return shipped


def _log_generators(tracker: Tracker, run_id: str, names: tuple[str, ...], upstream: dict[str, StageRef],
                    result: StageResult) -> None:
    with tempfile.TemporaryDirectory(prefix="arpipe-bundle-") as tmp:
        for name in names:
            # upstream outputs too: a mixture (exported by evaluate) ships its parts' files
            dirs = {**{u: Path(ref.path) for u, ref in upstream.items()}, result.stage: Path(result.output_dir)}
            if not exportable(name, dirs):
                continue  # e.g. no mixture: its parts did not run
            bundle = export_bundle(name, Path(upstream["tokenizer"].path), dirs,
                                   Path(tmp) / name / "bundle")  # pyfunc keeps the basename: artifacts/bundle
            tracker.log_generator(run_id, name, bundle)


def _latest_ref(config: PipelineConfig, stage: str) -> StageRef:
    """The upstream output ``arpipe stage`` reads: the stage's latest, whatever config built it (said so
    when it is not this run's config, so a recomputed stage is never silently paired with other settings)."""
    d = require_latest(config.work_dir, stage)
    manifest = d.manifest()
    differences = config_differences(manifest.config, config.section(stage))
    if differences:
        get_run_logger().warning(
            "%s: using its latest output %s, built with other settings than this config (%s); run `arpipe run` "
            "to build the configured %s first", stage, d.key, "; ".join(differences[:5]), stage)
    return StageRef(stage=stage, key=d.key, path=str(d.path), digest=manifest.digest)


def _report(tracker: Tracker, parent: str, config: PipelineConfig, summary: dict, record: Path) -> None:
    """The run report (``arcore.report``): beside the run record in the work dir, on the parent run, and
    as a Prefect artifact (Markdown: charts are embedded in the HTML only)."""
    report = build_report({**summary, "flow_run_name": flow_run.get_name()}, config_to_yaml(config))
    stem = record.with_suffix("")
    atomic_write_text(stem.with_name(stem.name + ".report.md"), report.markdown)
    atomic_write_text(stem.with_name(stem.name + ".report.html"), report.html)
    tracker.log_text(parent, report.markdown, "report.md")
    tracker.log_text(parent, report.html, "report.html")
    create_markdown_artifact(key="run-report", markdown=report.markdown, description="the run report")


def _publish(tracker: Tracker, parent: str, summary: dict) -> None:
    url = tracker.run_url(parent)
    create_link_artifact(link=url, link_text="MLflow run", key="mlflow-run", description="MLflow parent run")
    rows = "\n".join(
        f"| {s['stage']} | {s['state']} | {s['seconds']:.2f} | `{s['output_dir']}` |" for s in summary["stages"]
    )
    markdown = (f"# arpipe run\n\nMLflow: [{parent}]({url})\n\n| stage | state | seconds | output |\n"
                f"|---|---|---|---|\n{rows}\n")
    if summary["registry"]:
        markdown += "\n## Model registry\n\n| model | version | promoted | candidate valid bpb | champion valid bpb | why |\n|---|---|---|---|---|---|\n"
        for d in summary["registry"]:
            champion = "-" if d["champion_valid_bpb"] is None else f"{d['champion_valid_bpb']:.4f} (v{d['champion_version']})"
            markdown += (f"| {d['model']} | {d['version']} | {'yes' if d['promoted'] else 'no'} | "
                         f"{d['candidate_valid_bpb']:.4f} | {champion} | {d['reason']} |\n")
    tracker.log_text(parent, markdown, "summary.md")
    create_markdown_artifact(key="run-summary", markdown=markdown, description="stages, states, outputs, promotion")
    get_run_logger().info("MLflow run %s: %s", parent, url)
