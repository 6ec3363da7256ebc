"""Progress for long stages: a terminal bar (when the CLI asks for one) and a Prefect progress artifact.

Stages report ``progress(done, total)``; this turns it into a rich progress bar on stderr when
``ARPIPE_PROGRESS=1`` (the CLI sets it on a terminal without ``--json``), and into a Prefect progress
artifact updated at most every few seconds, so the UI shows how far a stage is.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from typing import Optional

ARTIFACT_EVERY_S = 3.0


class StageProgress:
    def __init__(self, stage: str):
        self.stage = stage
        self.bar = None
        self.task_id = None
        self.artifact_id = None
        self.last_artifact = 0.0
        self.failed = False
        if os.environ.get("ARPIPE_PROGRESS") == "1":
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TaskProgressColumn
            from rich.console import Console

            self.bar = Progress(
                TextColumn(f"[bold]{stage:<10}"), BarColumn(), TaskProgressColumn(), TimeElapsedColumn(),
                console=Console(file=sys.stderr), transient=True,
            )
            self.bar.start()
            self.task_id = self.bar.add_task(stage, total=None)

    def __call__(self, done: int, total: Optional[int] = None) -> None:
        if self.bar is not None:
            self.bar.update(self.task_id, completed=done, total=total)
        now = time.monotonic()
        if total and (now - self.last_artifact >= ARTIFACT_EVERY_S or done >= total):
            self.last_artifact = now
            self._artifact(100.0 * done / total)

    def _artifact(self, percent: float) -> None:
        """Best effort: progress is a side channel, so an API that stopped answering costs the updates,
        never the stage (issue 17); after one failure this stage sends no more."""
        from prefect.artifacts import create_progress_artifact, update_progress_artifact
        from prefect.context import TaskRunContext

        if self.failed or TaskRunContext.get() is None:
            return
        try:
            if self.artifact_id is None:
                self.artifact_id = create_progress_artifact(
                    progress=percent, key=f"{self.stage}-progress", description=f"{self.stage} progress"
                )
            else:
                update_progress_artifact(self.artifact_id, progress=percent)
        except Exception as exc:  # httpx.ConnectError, a 5xx, a timeout: all mean "no progress shown"
            self.failed = True
            logging.getLogger("arpipe").warning("%s: progress updates to the Prefect API stopped (%s: %s)",
                                                self.stage, type(exc).__name__, str(exc)[:200])

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()


def stage_progress(stage: str) -> StageProgress:
    return StageProgress(stage)
