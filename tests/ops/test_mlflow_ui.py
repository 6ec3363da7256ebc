"""The MLflow UI the way a user looks at a run (issue 14, item 9): a real pipeline run against a real
``mlflow server``, then the parent run's page and the experiment's Models tab rendered by headless
Chromium (Debian's ``chromium``), and the rendered DOM checked for the headline metrics and the logged
models. Skipped, with the reason, where no Chromium is installed.

``python -m tests.ops.test_mlflow_ui docs/mlflow_run.png`` takes the README's picture of a run the same way.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from arcore.config import load_config
from tests.conftest import FAST, write_corpus

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
ML_VIEW = "?workflowType=machine_learning"  # what Tracker.run_url appends: the model-training view
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--hide-scrollbars",
         "--virtual-time-budget=20000"]


def render(url: str, *extra: str, timeout_s: float = 180) -> str:
    """The DOM of ``url`` after its scripts ran (Chromium's --dump-dom), or the screenshot's log."""
    mode = [] if any(e.startswith("--screenshot") for e in extra) else ["--dump-dom"]
    done = subprocess.run([CHROMIUM, *FLAGS, *mode, *extra, url], capture_output=True, text=True, timeout=timeout_s)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def pipeline_run(server_url: str, tmp_path: Path) -> tuple[str, str]:
    """A small real pipeline run logged to ``server_url``; (experiment id, parent run id)."""
    from flows.pipeline import pipeline

    corpus = write_corpus(tmp_path / "corpus" / "a.txt", n_paragraphs=120)
    cfg = load_config(overrides=[f"work_dir={tmp_path / 'work'}", f"tracking.uri={server_url}",
                                 f"ingest.inputs=[{corpus}]", "ingest.valid_fraction=0.1",
                                 "ingest.test_fraction=0.1", "ngram.order=3", *FAST])
    summary = pipeline(config=cfg)
    run = MlflowClient(server_url).get_run(summary["mlflow_run_id"])
    return run.info.experiment_id, run.info.run_id


@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium installed (apt-get install chromium)")
def test_parent_run_and_models_tab_show_what_the_run_logged(prefect_harness, mlflow_server, tmp_path):
    experiment, parent = pipeline_run(mlflow_server.url, tmp_path)
    client = MlflowClient(mlflow_server.url)
    metrics = client.get_run(parent).data.metrics

    page = render(f"{mlflow_server.url}/#/experiments/{experiment}/runs/{parent}{ML_VIEW}")
    assert "Metrics" in page and parent in page
    assert "Model training" in page and "Evaluation runs" not in page  # the view arpipe's links open
    shown = [name for name in ("rnn.test.bits_per_byte", "ngram-kneser-ney.test.bits_per_byte",
                               "stage.rnn.seconds", "data.train.tokens") if name in page]
    assert len(shown) == 4, (shown, sorted(metrics))
    assert f"{metrics['rnn.test.bits_per_byte']:.4g}"[:4] in page  # the value, as the table rounds it

    logged = client.search_logged_models([experiment])
    assert logged, "the run logged no LoggedModel"
    models_tab = render(f"{mlflow_server.url}/#/experiments/{experiment}/models{ML_VIEW}")
    assert all(m.name in models_tab for m in logged), [m.name for m in logged]


if __name__ == "__main__":  # the README's screenshot
    import sys
    import tempfile

    from prefect.testing.utilities import prefect_test_harness

    from tests.ops.conftest import mlflow_server_process

    out = Path(sys.argv[1] if len(sys.argv) > 1 else "docs/mlflow_run.png").resolve()
    with tempfile.TemporaryDirectory() as tmp, prefect_test_harness(server_startup_timeout=180), \
            mlflow_server_process(Path(tmp) / "mlflow") as server:
        experiment, parent = pipeline_run(server.url, Path(tmp))
        render(f"{server.url}/#/experiments/{experiment}/runs/{parent}{ML_VIEW}", f"--screenshot={out}",
               "--window-size=1400,1700")
    print(out)
