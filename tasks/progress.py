"""Progress for long stages: a terminal bar (when the CLI asks for one) and a Prefect progress artifact.

Stages report ``progress(done, total)``; this turns it into a rich progress bar on stderr when
``ARPIPE_PROGRESS=1`` (the CLI sets it on a terminal without ``--json``), and into a Prefect progress
artifact updated at most every few seconds, so the UI shows how far a stage is.
"""

from __future__ import annotations

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
        from prefect.artifacts import create_progress_artifact, update_progress_artifact
        from prefect.context import TaskRunContext

        if TaskRunContext.get() is None:
            return
        if self.artifact_id is None:
            self.artifact_id = create_progress_artifact(
                progress=percent, key=f"{self.stage}-progress", description=f"{self.stage} progress"
            )
        else:
            update_progress_artifact(self.artifact_id, progress=percent)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()


def stage_progress(stage: str) -> StageProgress:
    return StageProgress(stage)
