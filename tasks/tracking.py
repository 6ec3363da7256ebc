"""All MLflow calls, in one place: the parent run per pipeline run, a child run per stage.

Runs are addressed by id through ``MlflowClient``, never through MLflow's thread-local "active run",
so tasks on any thread log to the right place. Reachability is checked up front with bounded retries
(``tracking.request_max_retries`` / ``request_timeout_s``), so a down server costs seconds, not the
minutes of MLflow's default retry policy. Runs still open when the process is interrupted are ended
as KILLED (``end_open_runs``); runs a killed process left RUNNING (SIGKILL leaves no chance) carry the
host, pid and pid start time that ran them, and the next run on that host ends them as KILLED
(``end_orphaned_runs``).
"""

from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import tempfile
import threading
import time
import warnings
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, Iterator, Mapping, Optional

from arcore.config import PipelineConfig, TrackingConfig, config_to_yaml
from arcore.errors import ArpipeError

DEFAULT_URI = "sqlite:///mlflow.db"
# The UI's ExperimentKind for classic model training (the other kinds: genai_development, finetuning, ...)
EXPERIMENT_TAGS = {"mlflow.experimentKind": "custom_model_development"}


class TrackingUnavailable(ArpipeError):
    pass


def flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """{"a": {"b": 1}} -> {"a.b": "1"}; lists become JSON."""
    out: dict[str, str] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(flatten(v, key + "."))
        else:
            out[key] = json.dumps(v) if isinstance(v, (list, tuple)) else str(v)
    return out


class Tracker:
    def __init__(self, cfg: TrackingConfig):
        # MLflow reads these per request; set before the first one.
        os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = str(cfg.request_max_retries)
        os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] = str(cfg.request_timeout_s)
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
        # MLflow prints "View run ... at ..." on stdout for server URIs: it would break `--json` output.
        os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
        # logging and registering models downloads and uploads bundles: no progress bars in a run's log
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
        from mlflow.tracking import MlflowClient

        self.cfg = cfg
        self.uri = cfg.uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_URI
        self.client = MlflowClient(tracking_uri=self.uri)
        self.open_runs: list[str] = []
        self._experiment_id: Optional[str] = None
        self.logged_models: dict[str, str] = {}  # model name as evaluate scores it -> LoggedModel id, this run
        self._datasets: dict[str, dict] = {}  # run id -> split -> the SplitDataset the run read
        self._model_runs: dict[str, str] = {}  # LoggedModel id -> the run that logged it
        self.down = False  # set once the store stopped answering mid-run

    def check(self) -> None:
        """Fail fast, with one line, if the tracking store cannot be reached."""
        try:
            self.experiment_id()
        except Exception as e:  # any transport or store error means the same thing to the user
            detail = str(e).strip().splitlines()[0][:300] if str(e).strip() else type(e).__name__
            raise TrackingUnavailable(
                f"MLflow tracking store {self.uri} is not reachable ({detail}); start it or set tracking.uri"
            ) from None

    def answers(self) -> bool:
        """Whether the store answers a request now (bounded by the same retries and timeout)."""
        try:
            self.client.get_experiment(self.experiment_id())
            return True
        except Exception:
            return False

    def lost(self, stage: str, output_dir: str) -> TrackingUnavailable:
        """The one line for a store that stopped answering after ``stage`` committed its outputs; no more
        requests are made to it in this process (``end_open_runs`` is skipped)."""
        self.down = True
        return TrackingUnavailable(
            f"the MLflow tracking store at {self.uri} stopped answering during stage {stage}; stage outputs "
            f"are committed in {output_dir}; rerun to log them")

    def experiment_id(self) -> str:
        """The configured experiment, created as a model-training experiment: MLflow 3's UI opens an
        experiment by its ``mlflow.experimentKind`` tag (without it, it may open the GenAI view of traces
        and evaluations); one made before this tag existed gets it, one whose kind a user chose keeps it."""
        if self._experiment_id is None:
            exp = self.client.get_experiment_by_name(self.cfg.experiment)
            if exp is None:
                self._experiment_id = self.client.create_experiment(
                    self.cfg.experiment, artifact_location=artifact_location(self.uri), tags=EXPERIMENT_TAGS)
            else:
                self._experiment_id = exp.experiment_id
                for k, v in EXPERIMENT_TAGS.items():
                    if k not in exp.tags:
                        self.client.set_experiment_tag(exp.experiment_id, k, v)
        return self._experiment_id

    def end_orphaned_runs(self) -> int:
        """Mark KILLED the runs left RUNNING by an arpipe process of this host that no longer exists (a
        SIGKILL, an OOM kill, a power cut); runs of live processes and of other hosts are left alone."""
        from mlflow.entities import ViewType

        host = socket.gethostname().replace("'", "")
        runs = self.client.search_runs(
            [self.experiment_id()], f"attributes.status = 'RUNNING' and tags.`arpipe.host` = '{host}'",
            run_view_type=ViewType.ACTIVE_ONLY, max_results=1000)
        ended = 0
        for run in runs:
            tags = run.data.tags
            if _process_alive(tags.get("arpipe.pid", ""), tags.get("arpipe.pid_started", "")):
                continue
            self.client.set_tag(run.info.run_id, "arpipe.ended_by", "a later run: the process that ran it was gone")
            self.client.set_terminated(run.info.run_id, "KILLED")
            ended += 1
        return ended

    def run_url(self, run_id: str) -> str:
        """The run's page in the MLflow UI, in its model-training view: MLflow 3.17's UI opens in the GenAI
        view (Evaluations, Traces) unless the URL or the browser's last choice says otherwise, whatever the
        experiment's kind."""
        return (f"{self.cfg.ui_url.rstrip('/')}/#/experiments/{self.experiment_id()}/runs/{run_id}"
                "?workflowType=machine_learning")

    def _start(self, name: str, tags: Mapping[str, str]) -> str:
        run = self.client.create_run(self.experiment_id(), run_name=name, tags={**tags, **_owner_tags()})
        self.open_runs.append(run.info.run_id)
        return run.info.run_id

    def start_pipeline_run(self, config: PipelineConfig, flow_run_id: Optional[str], flow_run_name: Optional[str],
                           mode: str, scheduled: bool = False) -> str:
        """The parent run: config as params and ``config.yaml``; MLflow's source and user tags (the runs
        table's Source and Created by columns: a deployment's run is a JOB, a direct one LOCAL); the
        config's ``tracking.tags``."""
        tags = {**config.tracking.tags, "arpipe.kind": "pipeline", "arpipe.mode": mode,
                "mlflow.source.name": "arpipe", "mlflow.source.type": "JOB" if scheduled else "LOCAL",
                "mlflow.user": _user()}
        if flow_run_id:
            tags.update({"prefect.flow_run_id": flow_run_id, "prefect.flow_run_name": flow_run_name or ""})
        commit = git_commit()
        if commit:
            tags["mlflow.source.git.commit"] = commit
        run_id = self._start(f"pipeline {flow_run_name or ''}".strip(), tags)
        self.log_params(run_id, flatten(config.model_dump(mode="json")))
        self.log_text(run_id, config_to_yaml(config), "config.yaml")
        return run_id

    def log_headline(self, run_id: str, stages: list[dict], digests: Mapping[str, str]) -> None:
        """The run's headline on the parent run (``headline``) and the digests of the data it read."""
        self.log_metrics(run_id, headline(stages))
        for name, digest in digests.items():
            self.client.set_tag(run_id, f"arpipe.{name}_digest", digest)

    def start_stage_run(self, parent_run_id: str, stage: str, section: Mapping[str, Any]) -> str:
        run_id = self._start(stage, {"mlflow.parentRunId": parent_run_id, "arpipe.stage": stage})
        self.log_params(run_id, flatten(section))
        return run_id

    def artifacts_run(self, stage: str, key: str, digest: str) -> Optional[str]:
        """A run of this store that holds the artifacts of exactly this output (stage, key, digest)."""
        runs = self.client.search_runs(
            [self.experiment_id()],
            f"tags.`arpipe.stage` = '{stage}' and tags.`arpipe.key` = '{key}' and "
            f"tags.`arpipe.digest` = '{digest}' and tags.`arpipe.artifacts_logged` = 'true'",
            max_results=1, order_by=["attributes.start_time ASC"])
        return runs[0].info.run_id if runs else None

    def finish_stage_run(self, run_id: str, result, cached: bool) -> None:
        """Metrics and tags of a stage, then its manifest and artifacts, uploaded once per output: a cached
        stage whose output's artifacts a run of this store already holds links to that run
        (``cached_from_run_id``, ``arpipe.artifacts_run_id``) and uploads nothing; one whose producer could
        not log them (the store was down, or another store) uploads them."""
        tags = {"cached": str(cached).lower(), "arpipe.output_dir": result.output_dir, "arpipe.key": result.key,
                "arpipe.digest": result.digest}
        if cached and result.produced_by.get("mlflow_run_id"):
            tags["cached_from_run_id"] = result.produced_by["mlflow_run_id"]
        holder = self.artifacts_run(result.stage, result.key, result.digest) if cached else None
        if holder:
            tags["arpipe.artifacts_run_id"] = holder
        for k, v in tags.items():
            self.client.set_tag(run_id, k, v)
        # evaluate's figures of the models this pipeline run logged are theirs too, and they are its inputs
        scored = {m: i for m, i in self.logged_models.items() if any(k.startswith(f"{m}.") for k in result.metrics)}
        if scored:
            from mlflow.entities import LoggedModelInput

            inputs = [LoggedModelInput(i) for i in scored.values() if self._model_runs.get(i) != run_id]
            if inputs:  # not the mixture evaluate fit itself: that one is its output
                self.client.log_inputs(run_id, models=inputs)
        self.log_metrics(run_id, {**result.metrics, "stage_seconds": result.seconds}, models=scored)
        if holder is None:
            self._log_stage_artifacts(run_id, result)
            self.client.set_tag(run_id, "arpipe.artifacts_logged", "true")
        self.end_run(run_id, "FINISHED")

    def _log_stage_artifacts(self, run_id: str, result) -> None:
        out = Path(result.output_dir)
        limit, skipped = self.cfg.max_artifact_mb, []
        for name in ["manifest.json", *result.artifacts]:
            if not (out / name).is_file():
                continue
            if limit is not None and (out / name).stat().st_size > limit * 2**20:
                skipped.append(name)  # tracking.max_artifact_mb: a multi-GB copy per run helps nobody
                continue
            if name.endswith(".table.json"):  # rows -> an MLflow table (shown in the UI's Evaluation tab)
                rows = json.loads((out / name).read_text())
                columns = {k: [r.get(k) for r in rows] for k in (rows[0] if rows else {})}
                self.client.log_table(run_id, data=columns, artifact_file=name.replace(".table", ""))
            else:  # keep the stage's layout: model/config.json stays under model/
                folder = Path(name).parent.as_posix()
                self.client.log_artifact(run_id, str(out / name), artifact_path=None if folder == "." else folder)
        if skipped:
            self.client.set_tag(run_id, "arpipe.artifacts_skipped",
                                f"{', '.join(skipped)} (over tracking.max_artifact_mb={limit}; in {out})")

    def log_generator(self, run_id: str, name: str, bundle_dir: Path) -> str:
        """Log ``bundle_dir`` (arcore.generate.export_bundle) as an MLflow 3 LoggedModel ``name`` of the run
        (the experiment's Models tab) with an input example; returns its URI, ``models:/<model_id>``.

        ``mlflow.pyfunc.log_model(name=...)`` would do the same, but it finds its run and store through the
        fluent API (the thread-local active run, the global tracking URI); Prefect runs tasks on worker
        threads and this tracker has its own URI. So the steps it takes are taken here through the client,
        by id: create the LoggedModel with its source run, save the pyfunc locally with that model's id in
        its MLmodel, upload it to the model, link it as an output of the run, mark it READY. The ``arcore``
        sources travel in the model (``code_paths``), so it loads wherever its pip requirements are installed.
        """
        import mlflow.pyfunc
        from mlflow.entities import LoggedModelOutput
        from mlflow.models import Model

        from arcore.generate import BUNDLE_META
        from tasks.pyfunc import INPUT_EXAMPLE, SIGNATURE, requirements

        model = self.client.create_logged_model(
            self.experiment_id(), name=name, source_run_id=run_id, model_type="generation",
            params=dict(self.client.get_run(run_id).data.params), tags={"arpipe.model": name})
        try:
            with tempfile.TemporaryDirectory(prefix="arpipe-pyfunc-") as tmp, warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # "add type hints" advice
                path = Path(tmp) / name
                mlflow.pyfunc.save_model(
                    path, python_model=str(Path(__file__).with_name("pyfunc.py")), artifacts={"bundle": str(bundle_dir)},
                    signature=SIGNATURE, code_paths=[str(Path(__file__).resolve().parents[1] / "arcore")],
                    pip_requirements=requirements(), input_example=INPUT_EXAMPLE,
                    mlflow_model=Model(artifact_path=model.artifact_location, run_id=run_id,
                                       model_uuid=model.model_id, model_id=model.model_id),
                )
                self.client.log_model_artifacts(model.model_id, str(path))
            self.client.log_outputs(run_id, [LoggedModelOutput(model.model_id, step=0)])
        except BaseException:
            with suppress(Exception):  # the store may be what failed: the original error is the one to see
                self.client.finalize_logged_model(model.model_id, "FAILED")
            raise
        self.client.finalize_logged_model(model.model_id, "READY")
        # evaluate's figures for this model (its name there: ngram -> ngram-kneser-ney) are linked to it
        self.logged_models[json.loads((Path(bundle_dir) / BUNDLE_META).read_text())["model"]] = model.model_id
        self._model_runs[model.model_id] = run_id
        uri = f"models:/{model.model_id}"
        self.client.set_tag(run_id, f"arpipe.model.{name}", uri)
        return uri

    def log_datasets(self, run_id: str, datasets) -> None:
        """The data a stage read (``arcore.datasets.SplitDataset``) as the run's dataset inputs, each tagged
        with how it was used (``mlflow.data.context``: training, validation, test); remembered per run so
        the figures computed on a split name it (``finish_stage_run``)."""
        from mlflow.entities import Dataset, DatasetInput, InputTag

        inputs = [DatasetInput(
            Dataset(d.name, d.digest, source_type="local",
                    source=json.dumps({"uri": d.uri, "split": d.split, "sha256": d.sha256}),
                    schema=json.dumps({"mlflow_colspec": [{"name": c, "type": t} for c, t in d.columns]}),
                    profile=json.dumps(dict(d.profile))),
            tags=[InputTag("mlflow.data.context", d.context)]) for d in datasets]
        if inputs:
            self.client.log_inputs(run_id, datasets=inputs)
        self._datasets[run_id] = {d.split: d for d in datasets}

    def record_run(self, name: str, params: Mapping[str, Any], metrics: Mapping[str, float]) -> str:
        """A standalone finished run (toy experiments): params, metrics, done."""
        run_id = self._start(name, {"arpipe.kind": "toy"})
        self.log_params(run_id, flatten(params))
        self.log_metrics(run_id, metrics)
        self.end_run(run_id, "FINISHED")
        return run_id

    # --- model registry -------------------------------------------------------------------------

    def register_version(self, name: str, model_uri: str, run_id: str, tags: Mapping[str, str]) -> str:
        """A new version of registered model ``name`` from the LoggedModel ``model_uri`` (``models:/<model_id>``),
        so the version's source is the logged model; the model lists its versions (``mlflow.modelVersions``,
        as ``mlflow.register_model`` keeps it) for its page in the UI."""
        from mlflow.exceptions import MlflowException
        from mlflow.utils.mlflow_tags import MLFLOW_MODEL_VERSIONS

        try:
            self.client.get_registered_model(name)
        except MlflowException:
            self.client.create_registered_model(name, description="arpipe generation model (pyfunc)")
        model_id = model_uri.removeprefix("models:/")
        with global_tracking_uri(self.uri):
            mv = self.client.create_model_version(name, model_uri, run_id=run_id, tags=dict(tags), model_id=model_id)
        listed = json.loads(self.client.get_logged_model(model_id).tags.get(MLFLOW_MODEL_VERSIONS, "[]"))
        if not any(v["name"] == name and str(v["version"]) == str(mv.version) for v in listed):  # a server adds it
            listed.append({"name": name, "version": int(mv.version)})
            self.client.set_logged_model_tags(model_id, {MLFLOW_MODEL_VERSIONS: json.dumps(listed)})
        return str(mv.version)

    def version_by_alias(self, name: str, alias: str):
        from mlflow.exceptions import MlflowException

        try:
            return self.client.get_model_version_by_alias(name, alias)
        except MlflowException:
            return None

    def set_alias(self, name: str, alias: str, version: str) -> None:
        self.client.set_registered_model_alias(name, alias, version)

    def tag_version(self, name: str, version: str, tags: Mapping[str, str]) -> None:
        for k, v in tags.items():
            self.client.set_model_version_tag(name, version, k, v)

    def download_bundle(self, model_location: str, dst: Path) -> Path:
        """The arcore bundle inside a logged generation pyfunc (``<model>/artifacts/bundle``), given where
        the model's files are: a LoggedModel's ``artifact_location``, a model version's download URI."""
        import mlflow.artifacts

        dst.mkdir(parents=True, exist_ok=True)
        return Path(mlflow.artifacts.download_artifacts(
            artifact_uri=f"{model_location.rstrip('/')}/artifacts/bundle", dst_path=str(dst), tracking_uri=self.uri))

    def model_location(self, model_uri: str) -> str:
        """Where the files of a ``models:/<model_id>`` LoggedModel are."""
        return self.client.get_logged_model(model_uri.removeprefix("models:/")).artifact_location

    def version_location(self, version) -> str:
        """Where the files of a registered model version are (its source resolved: a LoggedModel's files, or
        the run artifact path of a version registered before models were LoggedModels)."""
        return self.client.get_model_version_download_uri(version.name, version.version)

    def log_params(self, run_id: str, params: Mapping[str, str]) -> None:
        from mlflow.entities import Param

        items = [Param(k, v[:6000]) for k, v in params.items()]
        for i in range(0, len(items), 100):
            self.client.log_batch(run_id, params=items[i : i + 100])

    def log_metrics(self, run_id: str, metrics: Mapping[str, float], step: int = 0,
                    models: Mapping[str, str] = {}) -> None:
        """Metrics of the run. A figure ``<model>.<split>.<figure>`` of a model in ``models`` (name -> LoggedModel
        id) is that model's too (its Models tab row), computed on the split's dataset when the run logged
        that as an input: ``rnn.valid.bits_per_byte`` -> model rnn, dataset ``shards-valid``."""
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        datasets = self._datasets.get(run_id, {})

        def metric(key: str, value: float) -> Metric:
            model, _, rest = key.partition(".")
            model_id = models.get(model) if rest else None
            data = datasets.get(rest.split(".", 1)[0]) if model_id else None
            return Metric(key, float(value), now, step, model_id=model_id,
                          dataset_name=data.name if data else None, dataset_digest=data.digest if data else None)

        items = [metric(k, v) for k, v in metrics.items()]
        for i in range(0, len(items), 500):
            self.client.log_batch(run_id, metrics=items[i : i + 500])

    def log_text(self, run_id: str, text: str, name: str) -> None:
        self.client.log_text(run_id, text, name)

    def end_run(self, run_id: str, status: str) -> None:
        self.client.set_terminated(run_id, status)
        if run_id in self.open_runs:
            self.open_runs.remove(run_id)

    def end_open_runs(self, status: str) -> None:
        """Children first, then the parent, so the UI never shows a finished parent with live children."""
        if self.down:
            return  # each request would wait out the retries; the next run marks them (see README)
        for run_id in reversed(list(self.open_runs)):
            try:
                self.end_run(run_id, status)
            except Exception:  # best effort while shutting down; the store may be what failed
                pass


# The figures of evaluate's ``<model>.<split>.<figure>`` metrics that head a pipeline run.
HEADLINE_FIGURES = ("test.bits_per_byte", "valid.bits_per_byte", "test.perplexity_per_word",
                    "test.perplexity_per_token")
SPLITS = ("train", "valid", "test")


def artifact_location(uri: str) -> Optional[str]:
    """Where a new experiment's artifacts go: ``mlruns/`` beside a SQLite store's file, wherever the
    process runs (MLflow's own default is ``./mlruns`` of the current directory); None for a server or
    another database, whose own default (the server's ``--artifacts-destination``) applies.

    ``sqlite:////data/mlflow.db`` -> ``file:///data/mlruns``; ``sqlite:///mlflow.db`` -> ``file://<cwd>/mlruns``.
    """
    if not uri.startswith("sqlite:///"):
        return None
    path = uri[len("sqlite:///"):].split("?", 1)[0]
    if not path or path == ":memory:":
        return None
    return (Path(path).expanduser().resolve().parent / "mlruns").as_uri()


def headline(stages: list[dict]) -> dict[str, float]:
    """The parent run's metrics from the run summary's stage rows, named the same in every run so the runs
    table sorts on them and the compare view plots them side by side:

    - ``<model>.test.bits_per_byte``, ``<model>.valid.bits_per_byte``, ``<model>.test.perplexity_per_word``,
      ``<model>.test.perplexity_per_token`` for every model evaluate scored (``rnn``, ``ngram-kneser-ney``,
      ``mixture-rnn_ngram-kneser-ney``, ...);
    - ``<stage>.parameters`` and ``<stage>.train_seconds`` of the neural training stages (``rnn``,
      ``transformer``), as recorded by the run that trained them (a cached stage carries its producer's);
    - ``stage.<stage>.seconds``: what each stage cost this run (a cached stage: the lookup);
    - ``data.<split>.documents``, ``data.<split>.bytes`` (ingest) and ``data.<split>.tokens`` (shards).

    {"stage": "shards", "seconds": 1.5, "metrics": {"valid_tokens": 704.0, ...}}
      -> {"stage.shards.seconds": 1.5, "data.valid.tokens": 704.0, ...}
    """
    out: dict[str, float] = {}
    for row in stages:
        name, metrics = row["stage"], row["metrics"]
        out[f"stage.{name}.seconds"] = row["seconds"]
        if name == "evaluate":
            out.update({k: v for k, v in metrics.items() if k.split(".", 1)[-1] in HEADLINE_FIGURES})
        out.update({f"{name}.{k}": metrics[k] for k in ("parameters", "train_seconds") if k in metrics})
        if name in ("ingest", "shards"):
            for split in SPLITS:
                for source, figure in ((f"documents_{split}", "documents"), (f"bytes_{split}", "bytes"),
                                       (f"{split}_tokens", "tokens")):
                    if source in metrics:
                        out[f"data.{split}.{figure}"] = metrics[source]
    return out


def _user() -> str:
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry for the uid (some containers)
        return "unknown"


def _process_started(pid: int) -> str:
    """The start time of process ``pid`` in clock ticks since boot (Linux ``/proc``), '' if unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return ""


def _owner_tags() -> dict[str, str]:
    """Which process owns a run: host, pid and the pid's start time (pids are reused)."""
    return {"arpipe.host": socket.gethostname(), "arpipe.pid": str(os.getpid()),
            "arpipe.pid_started": _process_started(os.getpid())}


def _process_alive(pid: str, started: str) -> bool:
    if not pid.isdigit():
        return True  # not ours to judge
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # alive, another user's
    return not started or _process_started(int(pid)) in ("", started)


_GLOBAL_URI_LOCK = threading.Lock()


@contextmanager
def global_tracking_uri(uri: str, servers_too: bool = False) -> Iterator[None]:
    """MLflow's SQL registry store resolves a ``models:/<model_id>`` source through the process-wide tracking
    URI, not the client's (``SqlAlchemyStore.create_model_version``: "TODO: Propagate tracking URI ... rather
    than relying on global URI"), so with a SQLite store the URI is set for the call and restored after,
    ``$MLFLOW_TRACKING_URI`` included. A server store resolves it on the server: nothing is changed, unless
    ``servers_too`` (``mlflow.pyfunc.load_model`` of a ``models:/`` URI reads the global URI for any store)."""
    if uri.startswith(("http://", "https://", "databricks")) and not servers_too:
        yield
        return
    from mlflow.tracking._tracking_service import utils

    with _GLOBAL_URI_LOCK:
        before, env = utils._tracking_uri, os.environ.get("MLFLOW_TRACKING_URI")
        utils.set_tracking_uri(uri)
        try:
            yield
        finally:
            utils.set_tracking_uri(before)
            if env is None:
                os.environ.pop("MLFLOW_TRACKING_URI", None)
            else:
                os.environ["MLFLOW_TRACKING_URI"] = env


def git_commit() -> Optional[str]:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
            cwd=Path(__file__).resolve().parents[1],
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


class MetricBuffer:
    """Collects ``(step, metrics)`` from a training loop and logs them in batches (one request per
    ``every`` steps), so per-step logging does not slow training. A None tracker drops everything.

    Tracking is a side channel: a batch the store does not take never fails the training. After the
    first failure the buffer stops sending (each attempt would cost the bounded retries again) and keeps
    at most ``MAX_PENDING`` figures for one last try at ``flush(final=True)``; ``failure`` says what went
    wrong, for the caller to report once the stage's outputs are committed (issue 17)."""

    MAX_PENDING = 200_000

    def __init__(self, tracker: Optional[Tracker], run_id: Optional[str], every: int = 50, prefix: str = ""):
        self.tracker, self.run_id, self.every, self.prefix = tracker, run_id, every, prefix
        self.pending: list = []
        self.failure: Optional[str] = None
        self.dropped = 0

    def add(self, step: int, metrics: Mapping[str, float]) -> None:
        if self.tracker is None or self.run_id is None:
            return
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.pending += [Metric(self.prefix + k, float(v), now, int(step)) for k, v in metrics.items()
                         if isinstance(v, (int, float)) and math.isfinite(float(v))]
        if len(self.pending) > self.MAX_PENDING:
            self.dropped += len(self.pending) - self.MAX_PENDING
            del self.pending[: len(self.pending) - self.MAX_PENDING]
        if self.failure is None and len(self.pending) >= self.every * max(1, len(metrics)):
            self.flush()

    def flush(self, final: bool = False) -> None:
        """Send what is pending; never raises. Once a send failed, only a ``final`` flush tries again."""
        if not self.pending or self.tracker is None or (self.failure is not None and not final):
            return
        try:
            while self.pending:
                self.tracker.client.log_batch(self.run_id, metrics=self.pending[:500])
                del self.pending[:500]
            self.failure = None
        except Exception as exc:  # the store went away: keep the figures, let training go on
            self.failure = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ''}"
