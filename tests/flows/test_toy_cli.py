"""``arpipe toy binary-addition``: prints the results as JSON and records them in MLflow."""

import json

from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from flows.cli import app


def test_binary_addition_prints_and_logs(tmp_path, mlflow_uri):
    out = CliRunner().invoke(app, ["toy", "binary-addition", "--steps", "5", "--eval-samples", "20",
                                   "--set", f"tracking.uri={mlflow_uri}", "--set", f"work_dir={tmp_path / 'work'}"])
    assert out.exit_code == 0, out.output
    metrics = json.loads(out.stdout)
    assert {"rnn_exact_acc_64bit", "ff_exact_acc_8bit", "seconds", "mlflow_run_id"} <= metrics.keys()
    run = MlflowClient(mlflow_uri).get_run(metrics["mlflow_run_id"])
    assert run.info.status == "FINISHED" and run.data.params["steps"] == "5"
    assert run.data.metrics["rnn_exact_acc_64bit"] == metrics["rnn_exact_acc_64bit"]
    assert MlflowClient(mlflow_uri).get_experiment(run.info.experiment_id).name == "arpipe-toys"


def test_unreachable_store_is_one_line(tmp_path):
    out = CliRunner().invoke(app, ["toy", "binary-addition", "--steps", "5", "--set", "tracking.uri=http://127.0.0.1:9",
                                   "--set", "tracking.request_max_retries=0", "--set", f"work_dir={tmp_path}"])
    assert out.exit_code == 1 and "error: MLflow tracking store http://127.0.0.1:9 is not reachable" in out.output


def test_no_track(tmp_path):
    out = CliRunner().invoke(app, ["toy", "binary-addition", "--steps", "5", "--eval-samples", "20", "--no-track",
                                   "--set", f"work_dir={tmp_path}"])
    assert out.exit_code == 0 and "mlflow_run_id" not in json.loads(out.stdout)
