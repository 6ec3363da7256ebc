"""Shared fixtures: an isolated Prefect home and test server, temporary MLflow stores, small corpora.

PREFECT_HOME must point at a temporary directory before prefect is imported anywhere, so this module
sets it at import time (pytest imports conftest before the test modules).
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

_PREFECT_HOME = tempfile.mkdtemp(prefix="arpipe-prefect-home-")
atexit.register(shutil.rmtree, _PREFECT_HOME, ignore_errors=True)
os.environ["PREFECT_HOME"] = _PREFECT_HOME
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
os.environ.pop("PREFECT_API_URL", None)
os.environ.pop("MLFLOW_TRACKING_URI", None)

import pytest  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]

# Small models for end-to-end tests: every stage runs for real, in seconds.
FAST = ["tokenizer.vocab_size=400", "rnn.emb_size=24", "rnn.hidden_size=24", "rnn.epochs=1", "rnn.batch_size=8",
        "rnn.bptt=16", "rnn.eval_batch_size=8", "rnn.checkpoint_every=0", "evaluate.max_tokens=12",
        "transformer.layers=1", "transformer.d_model=16", "transformer.heads=2", "transformer.context=16",
        "transformer.epochs=1", "transformer.batch_size=8", "transformer.eval_batch_size=8",
        "transformer.checkpoint_every=0"]
CORPORA = ROOT.parent / "shared" / "corpora"


@pytest.fixture(scope="session")
def prefect_harness():
    """One Prefect test server for the session; yields its API URL for CLI subprocesses."""
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=180):
        yield PREFECT_API_URL.value()


@pytest.fixture
def mlflow_uri(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


def write_corpus(path: Path, n_paragraphs: int = 300, seed: int = 0) -> Path:
    """A small deterministic text corpus: blank-line separated paragraphs of simple sentences."""
    import random

    rng = random.Random(seed)
    words = ("the cat dog sat on a mat and ran to see his her red big small old new house tree river "
             "king queen said will not be or is was").split()
    paras = []
    for i in range(n_paragraphs):
        lines = [" ".join(rng.choice(words) for _ in range(rng.randint(4, 12))).capitalize() + "."
                 for _ in range(rng.randint(1, 4))]
        paras.append(f"Speaker {i}:\n" + "\n".join(lines))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n\n".join(paras) + "\n")
    return path


def small_run_config(tmp: Path, corpus: Path, *extra: str):
    """The config of a small real pipeline run in ``tmp`` (work dir, SQLite store) over ``corpus``: the
    FAST models, 10% valid and test; ``extra`` overrides on top."""
    from arcore.config import load_config

    return load_config(overrides=[
        f"work_dir={tmp / 'work'}", f"tracking.uri=sqlite:///{tmp / 'mlflow.db'}", f"ingest.inputs=[{corpus}]",
        "ingest.valid_fraction=0.1", "ingest.test_fraction=0.1", *FAST, *extra])
