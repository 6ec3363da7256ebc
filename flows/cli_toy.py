"""``arpipe toy ...``: the lecture's toy problems, runnable from the command line.

Mounted as ``arpipe toy``; each command calls one ``arcore`` function that returns a results dict,
prints it as JSON and records it as an MLflow run (experiment ``arpipe-toys``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

app = typer.Typer(help="Toy problems from the lecture.", no_args_is_help=True)


@app.callback()
def toy() -> None:
    """Toy problems from the lecture (a callback keeps subcommands even while there is only one)."""


@app.command("binary-addition")
def binary_addition(
    steps: Optional[int] = typer.Option(None, help="training steps (batches of random 8-bit pairs); default: "
                                        "AdditionConfig's (arcore/rnn/config.py)"),
    seed: Optional[int] = typer.Option(None, help="random seed; default: AdditionConfig's"),
    eval_samples: Optional[int] = typer.Option(None, help="test pairs per bit width; default: AdditionConfig's"),
    track: bool = typer.Option(True, help="log params and metrics to MLflow (experiment 'arpipe-toys')"),
    config: Optional[Path] = typer.Option(None, "--config", "-c", dir_okay=False, help="for tracking.uri"),
    set_: list[str] = typer.Option([], "--set", help="override: section.key=value (repeatable)"),
) -> dict:
    """Train an Elman RNN (2x16, 16x16, 16x1) to add 8-bit numbers; test it on 8 to 64 bits."""
    from flows.cli import fail, prepare

    cfg = prepare(config, set_)
    from arcore.rnn.config import AdditionConfig  # here: `arpipe --help` imports no stage library

    given = {"steps": steps, "seed": seed, "eval_samples": eval_samples}
    try:
        toy_cfg = AdditionConfig(**{k: v for k, v in given.items() if v is not None})
    except ValueError as e:  # pydantic's ValidationError: a value below its bound
        first = e.errors()[0] if hasattr(e, "errors") else {"loc": ("?",), "msg": str(e)}
        raise fail(f"--{str(first['loc'][0]).replace('_', '-')}: {first['msg']}", 2)
    tracker = None
    if track:
        from arcore.errors import ArpipeError
        from tasks.tracking import Tracker

        tracker = Tracker(cfg.tracking.model_copy(update={"experiment": "arpipe-toys"}))
        try:
            tracker.check()
        except ArpipeError as e:
            raise fail(str(e), 1)
    from arcore.rnn.toy_addition import run_binary_addition  # torch loads only when the toy runs

    result = run_binary_addition(toy_cfg)
    metrics = result.as_dict()
    if tracker is not None:
        metrics["mlflow_run_id"] = tracker.record_run(
            "binary-addition", toy_cfg.model_dump(mode="json"),
            {k: v for k, v in metrics.items() if isinstance(v, (int, float))})
    typer.echo(json.dumps(metrics, indent=2))
    return metrics


if __name__ == "__main__":
    app()
