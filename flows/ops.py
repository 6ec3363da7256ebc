"""Operations around the pipeline flow: serving it on a schedule, and garbage-collecting old outputs.

``serve_pipeline(config, cron)`` registers the ``arpipe`` flow as a deployment with a cron schedule on the
Prefect server named by ``PREFECT_API_URL`` and polls for its runs (Prefect's ``serve``): the
server's scheduler creates a run at each cron tick, this process executes it. Each run reads the input
folder afresh, so new or changed files change the ingest digest and retrain what depends on them, while
an unchanged folder gives a cheap, all-cached run.

``collect_garbage(config, keep, dry_run)`` applies ``arcore.retention`` to the config's work dir and to
Prefect's local result storage (``$PREFECT_HOME/storage`` unless configured otherwise).

Both refuse bad input with one-line ``ArpipeError``s before doing anything.
"""

from __future__ import annotations

import os

from pathlib import Path
from typing import Optional

from arcore.config import PipelineConfig
from arcore.errors import ArpipeError, ConfigError
from arcore.retention import GcPlan, GcReport, apply_gc, exclusive_for_gc, plan_gc

DEFAULT_DEPLOYMENT = "scheduled"


class PrefectServerUnavailable(ArpipeError):
    pass


def validate_cron(expr: str) -> str:
    """``"0 3 * * *"`` -> ``"0 3 * * *"``; ``"0 25 * * *"`` -> ConfigError naming the expression.

    Uses the validator Prefect applies to cron schedules, so what passes here is what the server accepts.
    """
    from prefect.client.schemas.schedules import CronSchedule
    from pydantic import ValidationError

    try:
        CronSchedule(cron=expr)
    except ValidationError:
        raise ConfigError(f"--cron {expr!r} is not a valid cron expression; expected five fields "
                          "(minute hour day month weekday), e.g. \"0 3 * * *\" for 03:00 every day") from None
    return expr


def prefect_api_url() -> Optional[str]:
    from prefect.settings import get_current_settings

    return get_current_settings().api.url


def require_prefect_server(timeout_s: float = 5.0) -> str:
    """The URL of a reachable Prefect server; schedules need one (its scheduler creates the runs)."""
    import httpx

    url = prefect_api_url()
    if not url:
        raise PrefectServerUnavailable(
            "serving on a schedule needs a Prefect server: run `prefect server start` and "
            "export PREFECT_API_URL=http://127.0.0.1:4200/api")
    try:
        httpx.get(f"{url.rstrip('/')}/health", timeout=timeout_s).raise_for_status()
    except httpx.HTTPError as e:
        raise PrefectServerUnavailable(
            f"Prefect server {url} is not reachable ({type(e).__name__}: {str(e)[:200]}); "
            "start it or fix PREFECT_API_URL") from None
    return url


def serve_pipeline(config: PipelineConfig, cron: str, name: str = DEFAULT_DEPLOYMENT) -> None:
    """Serve the pipeline flow with ``config`` on a cron schedule until interrupted (blocks).

    Each run starts ``python -m prefect.engine`` on the module entrypoint ``flows.pipeline.pipeline``
    rather than unpickling the flow object held by this process (what ``pipeline.serve`` does): a
    long-lived server then runs the code installed at each tick, and the flow's parameter model resolves
    ``PipelineConfig`` by importing the module (a flow pickled by value loses that name, because
    ``flows/pipeline.py`` uses postponed annotations).
    """
    validate_cron(cron)
    require_prefect_server()
    from prefect import serve
    from prefect.types.entrypoint import EntrypointType

    from flows.pipeline import pipeline

    deployment = pipeline.to_deployment(
        name=name,
        cron=cron,
        parameters={"config": config.model_dump(mode="json")},
        description=f"arpipe pipeline on cron {cron!r}, work dir {config.work_dir}",
        tags=["arpipe", "scheduled"],
        entrypoint_type=EntrypointType.MODULE_PATH,
    )
    # Ctrl-C takes the SIGTERM path: Prefect's runner shuts down on SIGTERM at once, while a first SIGINT
    # only cancels asyncio's main task, which the runner's loops can absorb (the full suite once saw a
    # served process ignore SIGINT for 60 s, then stop at once on SIGTERM). asyncio keeps a handler that
    # is not Python's default, so this one stays installed while serve() runs.
    import signal

    signal.signal(signal.SIGINT, lambda signum, frame: os.kill(os.getpid(), signal.SIGTERM))
    serve(deployment)


def prefect_result_storage() -> Path:
    """Where this process's Prefect tasks persist results (``PREFECT_RESULTS_LOCAL_STORAGE_PATH``)."""
    from prefect.settings import get_current_settings

    return Path(get_current_settings().results.local_storage_path).expanduser()


def collect_garbage(config: PipelineConfig, keep: int, dry_run: bool = False,
                    prefect_storage: Optional[Path] = None) -> tuple[GcPlan, Optional[GcReport]]:
    """Plan (and unless ``dry_run``, apply) retention of the last ``keep`` runs in ``config.work_dir``."""
    storage = prefect_storage or prefect_result_storage()
    if dry_run:
        return plan_gc(Path(config.work_dir), keep, storage), None
    with exclusive_for_gc(Path(config.work_dir)):  # refuses while a pipeline run is in progress
        plan = plan_gc(Path(config.work_dir), keep, storage)
        return plan, apply_gc(plan)
