"""The Prefect API as a side channel: telling "the API stopped answering" apart from a stage's own error.

A stage's computation and its commit never depend on the API (progress updates are best effort,
``tasks/progress.py``), but Prefect's task engine reports every state change to it: with the server gone,
the next report raises a transport error (``httpx.ConnectError``) out of the task call. ``lost_api(e)``
says whether ``e`` is that (a transport error or a 5xx somewhere in its chain, and the API's health
endpoint not answering now), so the flow and the CLI end the run with one line instead of a traceback.
"""

from __future__ import annotations

import logging
from typing import Optional

from arcore.errors import ArpipeError, exception_chain


class PrefectApiLost(ArpipeError):
    pass


def _transport_error(e: BaseException) -> bool:
    import httpx

    for exc in exception_chain(e):
        if isinstance(exc, (httpx.TransportError, ConnectionError, OSError)):
            return True
        response = getattr(exc, "response", None)
        if isinstance(response, httpx.Response) and response.status_code >= 500:
            return True
    return False


def api_url() -> Optional[str]:
    from prefect.settings import get_current_settings

    return get_current_settings().api.url


def api_answers(url: Optional[str], timeout_s: float = 3.0) -> bool:
    import httpx

    if not url:
        return True  # no API configured: nothing to lose
    try:
        return httpx.get(f"{url.rstrip('/')}/health", timeout=timeout_s).status_code < 500
    except httpx.HTTPError:
        return False


def lost_api(e: BaseException, url: Optional[str] = None) -> bool:
    """Whether ``e`` came from the Prefect API going away (and it does not answer now)."""
    if isinstance(e, PrefectApiLost):
        return True
    return _transport_error(e) and not api_answers(url or api_url())


def api_lost(url: Optional[str], stage: Optional[str], committed: list[str]) -> PrefectApiLost:
    """The one line; silences Prefect's own complaints (its log and event workers retry, then print
    "--- Error logging to API ---" and warnings at exit) for the rest of the process."""
    logging.raiseExceptions = False  # the log worker writes its errors only when this is set
    for name in ("prefect.events.clients", "prefect._internal.concurrency", "prefect.task_engine",
                 "prefect.flow_engine", "prefect.flow_runs", "prefect.task_runs"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    where = f" during stage {stage}" if stage else ""
    kept = (f"stage outputs are committed in {', '.join(committed)}" if committed
            else "no stage output was committed by this run")
    return PrefectApiLost(f"the Prefect API at {url} stopped answering{where}; {kept}; rerun (with the API "
                          "up) to continue from them")
