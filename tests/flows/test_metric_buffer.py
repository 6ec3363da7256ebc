"""Training figures are a side channel: a store that does not answer never raises into the training loop.

A real ``MlflowClient`` against a port nothing listens on (connection refused at once), no retries.
"""

from __future__ import annotations

import socket

from arcore.config import TrackingConfig
from tasks.tracking import MetricBuffer, Tracker


def _dead_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


def test_a_store_that_does_not_answer_costs_the_figures_not_the_training(monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "0")
    tracker = Tracker(TrackingConfig(uri=_dead_url(), request_max_retries=0, request_timeout_s=1))
    sent = []
    log_batch = tracker.client.log_batch

    def counting(*args, **kwargs):
        sent.append(1)
        return log_batch(*args, **kwargs)

    tracker.client.log_batch = counting  # the real call, counted
    buffer = MetricBuffer(tracker, "0" * 32, every=2)
    for step in range(1, 11):
        buffer.add(step, {"loss": 1.0 / step, "lr": 0.1})  # never raises
    assert buffer.failure and "MlflowException" in buffer.failure
    assert len(sent) == 1  # one failed send, then no more tries while training
    assert len(buffer.pending) == 20  # every figure kept for the last try
    buffer.flush()
    assert len(sent) == 1
    buffer.flush(final=True)
    assert len(sent) == 2 and len(buffer.pending) == 20 and buffer.failure
