"""``arpipe serve`` and ``arpipe gc``: the operations commands, as plain functions for ``flows.cli``.

    arpipe serve --cron "0 3 * * *"     serve the pipeline on a schedule (needs PREFECT_API_URL)
    arpipe gc --keep 3 [--dry-run]      remove stage outputs and Prefect results the last 3 runs don't need

Registered on the main app with ``app.command("serve")(serve_command)`` and
``app.command("gc")(gc_command)``. Both take ``--config`` and ``--set`` like ``arpipe run``; failures
print one ``error:`` line (exit 2 for bad usage or config, 1 for an unreachable server).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from arcore.errors import ArpipeError, ConfigError

_CONFIG = typer.Option(None, "--config", "-c", help="TOML or YAML config file", dir_okay=False)
_SET = typer.Option([], "--set", help="override: section.key=value (repeatable)")


def serve_command(
    cron: str = typer.Option(..., "--cron", help='cron schedule, e.g. "0 3 * * *" (03:00 daily)'),
    name: str = typer.Option("scheduled", "--name", help="deployment name (flow arpipe, deployment NAME)"),
    config: Optional[Path] = _CONFIG,
    set_: list[str] = _SET,
    runner: Optional[str] = typer.Option(None, "--runner", help="local, dask or dask://HOST:PORT (see arpipe run)"),
) -> None:
    """Serve the pipeline on a cron schedule against the Prefect server in PREFECT_API_URL (blocks)."""
    from flows.cli import check_inputs, fail, prepare

    cfg = prepare(config, set_, runner)
    check_inputs(cfg)  # each scheduled run re-reads the inputs; what cannot work is refused once, up front
    from flows.ops import serve_pipeline, validate_cron

    try:
        validate_cron(cron)
    except ConfigError as e:
        raise fail(str(e), 2)
    try:
        serve_pipeline(cfg, cron, name=name)
    except ArpipeError as e:
        raise fail(str(e), 1)


def gc_command(
    keep: int = typer.Option(..., "--keep", help="keep what the last N runs used (and each stage's LATEST)"),
    dry_run: bool = typer.Option(False, "--dry-run", help="print the plan, remove nothing"),
    config: Optional[Path] = _CONFIG,
    set_: list[str] = _SET,
    json_out: bool = typer.Option(False, "--json", help="print the plan as JSON"),
) -> None:
    """Remove stage outputs and Prefect results not needed by the last N runs."""
    from flows.cli import fail, prepare

    cfg = prepare(config, set_)
    from arcore.retention import human_bytes, plan_to_json
    from flows.ops import collect_garbage

    try:
        plan, report = collect_garbage(cfg, keep, dry_run=dry_run)
    except ConfigError as e:
        raise fail(str(e), 2)
    except ArpipeError as e:
        raise fail(str(e), 1)
    if json_out:
        data = json.loads(plan_to_json(plan))
        data["dry_run"] = dry_run
        if report is not None:
            data["skipped"] = [{"path": str(r.path), "why": why} for r, why in report.skipped]
        typer.echo(json.dumps(data, indent=2))
        return
    for line in plan.lines():
        typer.echo(line)
    if report is None:
        typer.echo("dry run: nothing removed")
        return
    for r, why in report.skipped:
        typer.echo(f"skipped {r.path}: {why}")
    typer.echo(f"removed {len(report.removed)}, freed {human_bytes(report.bytes_freed)}")
