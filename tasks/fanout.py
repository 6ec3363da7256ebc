"""Fan-out: a stage's map step as one Prefect task per piece on a Dask cluster (prefect-dask).

The config's ``runner`` picks where map steps run (``arcore.config.RunnerSpec``):

- ``local`` (default): no fan-out; each stage runs its map step in its own process.
- ``dask``: a ``distributed.LocalCluster`` of ``dask_workers`` single-threaded worker processes on this
  machine, started on the first map of the flow run (an all-cached run starts none), stopped at its end.
- ``dask://HOST:PORT``: an existing Dask scheduler. Its workers need this project installed and
  ``PREFECT_API_URL`` set to the Prefect server the flow reports to (each piece is a Prefect task run);
  they need no access to the work dir: pieces carry their data and results come back to the flow.

The flow opens ``fan_out(flow_run_id, config)`` around its stages; a stage task asks
``mapper_for(ctx, "encode")`` and hands the mapper to its ``arcore`` function (``arcore.parallel``).
Pieces are submitted with a bounded window (twice the cluster's threads) and yielded in order, so the
reduce in the flow process sees exactly the sequence a local run sees: outputs are byte-identical.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections import deque
from contextlib import contextmanager
from itertools import count
from typing import Any, Callable, Iterable, Iterator, Optional

from prefect import task
from prefect.cache_policies import NO_CACHE

from arcore.config import PipelineConfig, RunnerSpec
from arcore.errors import StageError
from arcore.parallel import Mapper
from tasks.contract import StageContext

CONNECT_TIMEOUT_S = 10  # to reach the scheduler, then for a first worker to be there


@task(name="map-piece", cache_policy=NO_CACHE, persist_result=False)
def map_piece(fn: Callable[[Any], Any], item: Any) -> Any:
    """One piece of a stage's map step, on a Dask worker."""
    return fn(item)


class FanOut:
    """A Dask task runner for one flow run, started on first use."""

    def __init__(self, spec: RunnerSpec, workers: int):
        self.spec = spec
        self.workers = workers
        self._runner = None
        self.window = 2

    def runner(self):
        if self._runner is None:
            from prefect_dask import DaskTaskRunner

            if self.spec.address:
                runner = DaskTaskRunner(address=self.spec.address, client_kwargs={"timeout": CONNECT_TIMEOUT_S})
            else:
                logging.getLogger("distributed").setLevel(logging.WARNING)  # its scheduler runs in this process
                runner = DaskTaskRunner(cluster_kwargs=self._local_cluster())
            runner.__enter__()
            where = f"the Dask scheduler at {self.spec.address}" if self.spec.address else "a local Dask cluster"
            try:
                client = runner.client  # connects (or starts the local cluster) now
            except (OSError, TimeoutError) as e:
                runner.__exit__(None, None, None)
                raise StageError(f"cannot reach {where}: {str(e).splitlines()[0]}; start it or run with "
                                 "--runner local") from None
            try:
                client.wait_for_workers(1, timeout=CONNECT_TIMEOUT_S)
            except TimeoutError:
                runner.__exit__(None, None, None)
                raise StageError(f"{where} has no workers; start some (dask worker {self.spec.address}) or "
                                 "run with --runner local") from None
            threads = sum(client.nthreads().values())
            self.window = 2 * threads
            self._runner = runner
        return self._runner

    def _local_cluster(self) -> dict[str, Any]:
        return {
            "n_workers": self.workers, "threads_per_worker": 1, "processes": True,
            "host": "127.0.0.1", "dashboard_address": "127.0.0.1:8787", "silence_logs": logging.WARNING,
            # each piece is a Prefect task run: workers report to the flow's API instead of starting their own
            "env": {"PREFECT_API_URL": _api_url(), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
                    "TOKENIZERS_PARALLELISM": "false",
                    **({"PREFECT_HOME": os.environ["PREFECT_HOME"]} if "PREFECT_HOME" in os.environ else {})},
        }

    def mapper(self, stage: str, step: str) -> Mapper:
        piece = map_piece.with_options(name=f"{stage}-{step}")
        numbers = count()  # task runs are numbered across the mapper's calls (shards maps once per split)

        def run(fn: Callable[[Any], Any], items: Iterable[Any]) -> Iterator[Any]:
            runner = self.runner()
            pending: deque = deque()
            for item in items:
                named = piece.with_options(task_run_name=f"{stage}-{step}-{next(numbers):05d}")
                with signals_deferred():
                    pending.append(runner.submit(named, {"fn": fn, "item": item}))
                if len(pending) >= self.window:
                    yield _result(pending.popleft())
            while pending:
                yield _result(pending.popleft())

        return run

    def close(self) -> None:
        if self._runner is not None:
            runner, self._runner = self._runner, None
            runner.__exit__(None, None, None)


def _result(future) -> Any:
    future.wait()  # interruptible: Ctrl-C / SIGTERM while a piece runs stops the stage here
    with signals_deferred():
        return future.result()


@contextmanager
def signals_deferred() -> Iterator[None]:
    """Hold SIGINT/SIGTERM until the block ends, then deliver them to the handlers that were installed.

    Submitting a piece serializes Prefect's run context through pydantic, which wraps any exception
    raised inside it, Prefect's ``TerminationSignal`` included, into a ``PydanticSerializationError``:
    a SIGTERM landing there would end the run as a crash instead of a cancellation. Submission and
    result decoding are short, so they are made safe points: a signal that arrives during one is
    re-delivered as soon as it ends. (Python runs signal handlers in the main thread only.)"""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[tuple[int, Any]] = []
    watched = (signal.SIGINT, signal.SIGTERM)
    previous = {s: signal.signal(s, lambda signum, frame: caught.append((signum, frame))) for s in watched}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        if caught:
            signum, frame = caught[0]
            handler = previous[signum]
            if callable(handler):
                handler(signum, frame)
            elif handler != signal.SIG_IGN:
                os.kill(os.getpid(), signum)  # the default action, now that it is restored


_ACTIVE: dict[str, FanOut] = {}


@contextmanager
def fan_out(flow_run_id: Optional[str], config: PipelineConfig) -> Iterator[Optional[FanOut]]:
    """Make ``config.runner`` available to the stage tasks of ``flow_run_id`` until the block ends."""
    spec = config.runner_spec()
    if not spec.dask or flow_run_id is None:
        yield None
        return
    fan = _ACTIVE[flow_run_id] = FanOut(spec, config.dask_workers)
    try:
        yield fan
    finally:
        _ACTIVE.pop(flow_run_id, None)
        fan.close()


def mapper_for(ctx: StageContext, step: str) -> Optional[Mapper]:
    """The mapper for ``ctx``'s stage in its flow run, or None to map in-process (runner ``local``)."""
    fan = _ACTIVE.get(ctx.flow_run_id or "")
    return None if fan is None else fan.mapper(ctx.stage, step)


def _api_url() -> str:
    """The Prefect API the flow reports to; in ephemeral mode, the temporary server it started."""
    from prefect.settings import get_current_settings

    url = get_current_settings().api.url
    if url:
        return url
    from prefect.server.api.server import SubprocessASGIServer

    server = SubprocessASGIServer()  # the instance the flow's own client uses
    server.start()
    return server.api_url
