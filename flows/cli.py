"""The ``arpipe`` command line.

    arpipe run [--from STAGE]        the whole pipeline; --from recomputes STAGE and what follows;
                                     --runner dask fans shard encoding and n-gram counting out on Dask
    arpipe stage NAME                recompute exactly one stage on the latest upstream outputs
    arpipe status                    per stage: is its output for this config there, and where
    arpipe serve --cron EXPR         serve the pipeline on a schedule (needs a Prefect server)
    arpipe gc --keep N               remove stage outputs the last N runs do not need
    arpipe generate --model M        continue a prompt with a trained model and a decoder
    arpipe score FILE --model M      perplexity and bits per byte of a text under a model
    arpipe ngram estimate|score      KenLM-style n-gram tools on whitespace-tokenized text
    arpipe toy binary-addition       the lecture's Elman RNN adding binary numbers, logged to MLflow

All take ``--config FILE`` (TOML or YAML) and repeatable ``--set section.key=value``; ``--json`` prints
one machine-readable summary on stdout at the end. Exit codes: 0 success, 1 a stage or the tracking
store failed, 2 invalid config or usage, 3 the evaluation gate failed (a new model regressed),
130 interrupted (Ctrl-C), 143 terminated (SIGTERM); failures print one ``error:`` line.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer

from arcore.errors import ArpipeError, ConfigError, GateFailed
from flows.stage_names import STAGE_NAMES

if TYPE_CHECKING:  # imported where used: `arpipe --help` and `--version` load no stage library
    from arcore.config import PipelineConfig

_STAGES_HELP = " | ".join(STAGE_NAMES)
app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  context_settings={"help_option_names": ["-h", "--help"]},
                  help="Train and compare autoregressive language models, from raw text to generated text.")


def _print_version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            typer.echo(f"arpipe {version('arpipe')}")
        except PackageNotFoundError:  # a source tree on PYTHONPATH, not installed
            from arcore import __version__

            typer.echo(f"arpipe {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", "-V", callback=_print_version, is_eager=True,
                                       help="print arpipe's version and exit")) -> None:
    """Train and compare autoregressive language models, from raw text to generated text."""

ConfigOpt = typer.Option(None, "--config", "-c", help="TOML or YAML config file", dir_okay=False)
SetOpt = typer.Option([], "--set", help="override: section.key=value (repeatable)")
JsonOpt = typer.Option(False, "--json", help="print one JSON summary on stdout at the end")
RunnerOpt = typer.Option(None, "--runner", help="where map steps run: local, dask (a local cluster) or "
                                                "dask://HOST:PORT (an existing scheduler); same as --set runner=...")


def fail(message: str, code: int) -> "typer.Exit":
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def prepare(config: Optional[Path], sets: list[str], runner: Optional[str] = None) -> "PipelineConfig":
    """Validate the config and point Prefect at the project's work dir, before any work starts."""
    from arcore.config import load_config

    try:
        cfg = load_config(config, [*sets, *([f"runner={runner}"] if runner else [])])
    except ConfigError as e:
        raise fail(str(e), 2)
    work = Path(cfg.work_dir).resolve()
    work.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("PREFECT_HOME", str(work / "prefect"))
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    return cfg


def check_inputs(cfg: PipelineConfig) -> None:
    """The preflight (``arcore.preflight``): inputs that cannot make a run are refused here, in seconds,
    before the Prefect API starts; warnings (skipped special files) go to stderr."""
    from arcore.preflight import preflight

    try:
        warnings = preflight(cfg)
    except ConfigError as e:
        raise fail(str(e), 2)
    except ArpipeError as e:
        raise fail(str(e), 1)
    for line in warnings:
        typer.echo(f"warning: {line}", err=True)


def execute(cfg: PipelineConfig, json_out: bool, **mode) -> None:
    if not json_out and sys.stderr.isatty():
        os.environ["ARPIPE_PROGRESS"] = "1"
    from flows.pipeline import failed_summary, pipeline  # imports prefect: after PREFECT_HOME is set

    # Prefect turns SIGTERM into TerminationSignal inside the flow (which marks the MLflow runs KILLED),
    # then restores the handler it found and re-sends the signal: this one, so the run ends with a line
    signal.signal(signal.SIGTERM, _raise_terminated)
    from arcore.retention import hold_setup, release_setup

    hold_setup(Path(cfg.work_dir))  # released by the flow once its stores are set up (or below)
    try:
        summary = pipeline(config=cfg, **mode)
    except (Terminated, KeyboardInterrupt, Exception) as e:
        release_setup()
        message, code = _failure(e)
        if json_out:  # scripts get what finished, and the error line, on stdout as on success
            partial = failed_summary(e) or {"flow_run_id": None, "mlflow_run_id": None, "runner": cfg.runner,
                                            "stages": [], "registry": []}
            typer.echo(json.dumps({**partial, "error": message, "exit_code": code}, indent=2))
        raise fail(message, code)
    release_setup()
    if json_out:
        typer.echo(json.dumps(summary, indent=2))
    else:
        print_summary(summary)


def _full_disk(e: BaseException) -> Optional[OSError]:
    import errno

    from arcore.errors import exception_chain

    return next((x for x in exception_chain(e) if isinstance(x, OSError) and x.errno in (errno.ENOSPC, errno.EDQUOT)),
                None)


def _failure(e: BaseException) -> tuple[str, int]:
    """The one ``error:`` line and the exit code of a run that ended with ``e``."""
    if isinstance(e, Terminated):
        return "terminated (SIGTERM); runs in progress were marked KILLED", 143
    if isinstance(e, KeyboardInterrupt):
        return "interrupted; runs in progress were marked KILLED", 130
    if isinstance(e, GateFailed):
        return str(e), 3
    if isinstance(e, ArpipeError):
        return str(e), 1
    full = _full_disk(e)
    if full is not None:  # outside a stage's build (which says which stage): a store, a cache, a log
        where = f" writing {full.filename}" if full.filename else ""
        return (f"no space left on the device{where}; committed stage outputs are intact: free space "
                "(`arpipe gc --keep N`) or move work_dir / the stores to a bigger disk, then rerun"), 1
    from flows.prefect_api import api_lost, api_url, lost_api

    if lost_api(e):  # between stages, or the flow's own state reports
        return str(api_lost(api_url(), None, [])).replace(
            "no stage output was committed by this run", "every stage output committed so far is kept"), 1
    # a bug, not bad input: still one line here, details in the Prefect logs
    return f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''} (see the log above)", 1


class Terminated(BaseException):
    """SIGTERM reached the CLI (after the flow handled it)."""


def _raise_terminated(signum, frame) -> None:
    raise Terminated()


def print_summary(summary: dict) -> None:
    typer.echo(f"{'stage':<11} {'state':<10} {'seconds':>8}  output")
    for s in summary["stages"]:
        typer.echo(f"{s['stage']:<11} {s['state']:<10} {s['seconds']:>8.2f}  {s['output_dir']}")
        shown = {k: v for k, v in s["metrics"].items() if not k.startswith("bytes_")}
        if shown:
            typer.echo("            " + ", ".join(f"{k}={v:g}" for k, v in list(shown.items())[:8]))
    for s in summary["stages"]:
        table = Path(s["output_dir"]) / "comparison.md"
        if table.is_file():
            typer.echo("\n" + table.read_text())
    typer.echo(f"MLflow run {summary['mlflow_run_id']}   Prefect flow run {summary['flow_run_id']}")


@app.command()
def run(
    from_: Optional[str] = typer.Option(None, "--from", metavar="STAGE",
                                        help=f"recompute this stage and all later ones: {_STAGES_HELP}"),
    config: Optional[Path] = ConfigOpt, set_: list[str] = SetOpt, json_out: bool = JsonOpt,
    runner: Optional[str] = RunnerOpt,
) -> None:
    """Run the whole pipeline, reusing every stage whose output for this config exists."""
    cfg = prepare(config, set_, runner)
    _check_stage(from_)
    check_inputs(cfg)
    execute(cfg, json_out, rerun_from=from_)


@app.command()
def stage(
    name: str = typer.Argument(..., metavar="STAGE", help=f"the stage to recompute: {_STAGES_HELP}"),
    config: Optional[Path] = ConfigOpt, set_: list[str] = SetOpt, json_out: bool = JsonOpt,
    runner: Optional[str] = RunnerOpt,
) -> None:
    """Recompute exactly one stage (ignoring its cache) on the latest upstream outputs."""
    cfg = prepare(config, set_, runner)
    _check_stage(name)
    if name == "ingest":  # the other stages read their upstream outputs, not the inputs
        check_inputs(cfg)
    execute(cfg, json_out, only=name)


@app.command()
def status(config: Optional[Path] = ConfigOpt, set_: list[str] = SetOpt, json_out: bool = JsonOpt) -> None:
    """Per stage: whether its output for the current config exists, and where."""
    cfg = prepare(config, set_)
    from flows.stages import stage_status

    try:
        rows = stage_status(cfg)
    except ArpipeError as e:
        raise fail(str(e), 1)
    if json_out:
        typer.echo(json.dumps({"stages": rows}, indent=2))
        return
    for r in rows:
        typer.echo(f"{r['stage']:<11} {r['state']:<9} {r['output_dir'] or '-'}  {r['detail']}")


def _mount_subcommands() -> None:
    from flows.cli_generate import generate_command, score_command
    from flows.cli_ngram import app as ngram_app
    from flows.cli_ops import gc_command, serve_command
    from flows.cli_toy import app as toy_app

    app.command("serve")(serve_command)
    app.command("gc")(gc_command)
    app.command("generate")(generate_command)
    app.command("score")(score_command)
    app.add_typer(ngram_app, name="ngram", help="KenLM-style n-gram estimation and scoring on plain text")
    app.add_typer(toy_app, name="toy", help="the lecture's toy problems (binary addition with an Elman RNN)")


_mount_subcommands()


def _check_stage(name: Optional[str]) -> None:
    if name is None:
        return
    if name not in STAGE_NAMES:
        raise fail(f"unknown stage {name!r}; stages are: {', '.join(STAGE_NAMES)}", 2)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
