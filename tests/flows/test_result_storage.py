"""Nothing under Prefect's result storage is ever read back: a crafted result file runs no code (issue 17).

Prefect reads a result file with the serializer the file itself names, cloudpickle included, so any file
it looks up under ``$PREFECT_HOME/storage`` is code it runs. The stages used to persist their results
there under ``arpipe-<stage>-<key>-<digest16>`` and look them up on every cached run. Here a real
pipeline run is followed by a crafted record, built with Prefect's own ``ResultRecord`` and pickle
serializer, at every name an arpipe version ever looked up for this run's outputs; the rerun must find
every stage cached from its manifest, leave the payload unrun, and persist nothing itself.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from prefect.results import ResultRecord, ResultRecordMetadata
from prefect.serializers import PickleSerializer

from arcore.config import load_config
from flows.ops import prefect_result_storage
from flows.pipeline import pipeline
from flows.stages import default_stage_names
from tests.conftest import FAST, write_corpus


class Payload:
    """Unpickling this creates ``marker``: proof that a stored result was deserialized."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def test_a_crafted_result_file_runs_nothing_and_stages_stay_cached(prefect_harness, tmp_path, mlflow_uri):
    corpus = write_corpus(tmp_path / "corpus" / "a.txt", n_paragraphs=150)
    cfg = load_config(overrides=[f"work_dir={tmp_path / 'work'}", f"tracking.uri={mlflow_uri}",
                                 f"ingest.inputs=[{corpus}]", "ingest.valid_fraction=0.1",
                                 "ingest.test_fraction=0.1", "ngram.order=2", *FAST])
    storage = prefect_result_storage()
    before = set(storage.rglob("*")) if storage.exists() else set()
    first = pipeline(config=cfg)
    after = set(storage.rglob("*")) if storage.exists() else set()
    assert after == before, f"the run persisted Prefect results: {sorted(map(str, after - before))[:5]}"

    marker = tmp_path / "pwned"
    serializer = PickleSerializer(picklelib="cloudpickle")
    for s in first["stages"]:
        out = Path(s["output_dir"])
        digest = json.loads((out / "manifest.json").read_text())["digest"]
        key = f"arpipe-{s['stage']}-{out.name}-{digest[:16]}"
        record = ResultRecord(metadata=ResultRecordMetadata(storage_key=key, serializer=serializer),
                              result=Payload(str(marker)))
        storage.mkdir(parents=True, exist_ok=True)
        (storage / key).write_bytes(record.serialize())
    # the planted file is what Prefect would execute on reading it
    ResultRecord.deserialize((storage / key).read_bytes())
    assert marker.is_dir()
    marker.rmdir()

    again = pipeline(config=cfg)
    assert {s["stage"]: s["state"] for s in again["stages"]} == {n: "cached" for n in default_stage_names()}
    assert not marker.exists(), "a stored Prefect result was unpickled"
