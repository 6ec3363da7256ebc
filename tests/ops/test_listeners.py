"""Issue 17, item 8: every listener the project starts binds 127.0.0.1 by default. The local Dask
cluster of ``--runner dask`` (scheduler, its dashboard, the workers and their nannies) is started with
the kwargs the runner uses, and this process's and the workers' listening sockets are inspected."""

from __future__ import annotations

import os

import psutil


def _listening(pids: set[int]) -> list[tuple[int, str, int]]:
    found = []
    for pid in pids:
        try:
            conns = psutil.Process(pid).net_connections(kind="inet")
        except psutil.Error:
            continue
        found += [(pid, c.laddr.ip, c.laddr.port) for c in conns if c.status == psutil.CONN_LISTEN]
    return found


def test_local_dask_cluster_listens_on_loopback_only(monkeypatch):
    from distributed import LocalCluster

    from arcore.config import RunnerSpec
    from tasks import fanout

    monkeypatch.setattr(fanout, "_api_url", lambda: "http://127.0.0.1:9/api")  # no Prefect API needed here
    kwargs = fanout.FanOut(RunnerSpec(dask=True), workers=1)._local_cluster()
    kwargs["dashboard_address"] = kwargs["dashboard_address"].rsplit(":", 1)[0] + ":0"  # any free port, same host
    before = {(ip, port) for _, ip, port in _listening({os.getpid()})}
    with LocalCluster(**kwargs) as cluster:
        cluster.wait_for_workers(1)
        me = psutil.Process()
        pids = {os.getpid(), *(p.pid for p in me.children(recursive=True))}
        opened = [(pid, ip, port) for pid, ip, port in _listening(pids) if (ip, port) not in before]
        assert len(opened) >= 2  # the scheduler, a worker and its nanny (and the dashboard, with bokeh)
        assert {ip for _, ip, _ in opened} == {"127.0.0.1"}, opened
        try:
            import bokeh  # noqa: F401  the dashboard only starts where bokeh is installed
        except ImportError:
            return
        assert cluster.dashboard_link.startswith("http://127.0.0.1:")
