"""register: put each newly trained model in the MLflow Model Registry and move ``champion`` if it wins.

A version is registered from the stage's LoggedModel (source ``models:/<model_id>``, the run's
``arpipe.model.<family>`` tag), so the registry and the experiment's Models tab name the same model.

Not a cached stage: it runs after ``evaluate`` in every pipeline run and registers each configured
family's model unless a version of that very stage output is registered already (tag
``arpipe.output_digest``, or for versions registered before that tag, the run that computed the output).
What decides is the registry, not whether this run computed the stage: a model committed by a run killed
before it registered is registered by the next run, whose cached stage then logs its generation model
(issue 17); an unchanged rerun registers nothing. Champion and candidate are both scored on the
current valid text with their own tokenizers (``arcore.generate.score_text``), so the comparison is on
the same data even when the champion came from another config; ``arcore.promotion.decide`` decides.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Optional

from prefect import task
from prefect.cache_policies import NO_CACHE

from arcore.generate import FAMILY_STAGE, load_bundle, score_text
from arcore.promotion import RegistryConfig, decide
from arcore.tokenize.corpus import iter_texts
from tasks.tracking import Tracker


def _output(stage: dict) -> tuple[str, Optional[str]]:
    """The output digest of a stage row of the run summary and the MLflow run that computed it."""
    manifest = json.loads((Path(stage["output_dir"]) / "manifest.json").read_text())
    return manifest["digest"], (manifest.get("produced_by") or {}).get("mlflow_run_id")


def registered_version(tracker: Tracker, name: str, digest: str, produced_by: Optional[str]) -> Optional[str]:
    """The version of registered model ``name`` made from the stage output ``digest``, if there is one."""
    from mlflow.exceptions import MlflowException

    try:
        versions = tracker.client.search_model_versions(f"name = '{name}'")
    except MlflowException:
        return None
    for v in versions:
        if v.tags.get("arpipe.output_digest") == digest or (produced_by and v.run_id == produced_by):
            return str(v.version)
    return None


def unregistered(cfg: RegistryConfig, tracker: Tracker, stage: dict) -> list[str]:
    """The configured families exported by this stage row whose output has no registered version yet."""
    if not cfg.enabled:
        return []
    families = [f for f in cfg.families if FAMILY_STAGE.get(f, f) == stage["stage"]]
    if not families:
        return []
    digest, produced_by = _output(stage)
    return [f for f in families if registered_version(tracker, f"{cfg.prefix}{f}", digest, produced_by) is None]


def _valid_bpb(tracker: Tracker, model_location: str, texts: list[str], tmp: Path) -> float:
    tok, model, _ = load_bundle(tracker.download_bundle(model_location, tmp))
    return score_text(model, tok, texts).bits_per_byte


@task(name="register", cache_policy=NO_CACHE)
def register(cfg: RegistryConfig, tracker: Tracker, pipeline_run_id: str, stages: list[dict],
             digests: dict[str, str], ingest_dir: str) -> list[dict]:
    texts = list(iter_texts(Path(ingest_dir), "valid"))
    by_stage = {s["stage"]: s for s in stages}
    decisions = []
    for family in cfg.families:
        stage = by_stage.get(FAMILY_STAGE.get(family, family))  # mixtures are exported by evaluate
        if stage is None or stage["state"] == "failed":
            continue
        name, run_id = f"{cfg.prefix}{family}", stage["mlflow_run_id"]
        digest, produced_by = _output(stage)
        if registered_version(tracker, name, digest, produced_by) is not None:
            continue  # this very output is registered already (an unchanged rerun)
        model_uri = tracker.client.get_run(run_id).data.tags.get(f"arpipe.model.{family}")
        if model_uri is None:
            continue  # no generation model logged (tracking.max_logged_model_mb): nothing to register
        with tempfile.TemporaryDirectory(prefix="arpipe-register-") as tmp:
            candidate = _valid_bpb(tracker, tracker.model_location(model_uri), texts, Path(tmp) / "candidate")
            champion = tracker.version_by_alias(name, cfg.alias)
            champion_bpb = (_valid_bpb(tracker, tracker.version_location(champion), texts, Path(tmp) / "champion")
                            if champion is not None else None)
        decision = decide(candidate, champion_bpb, cfg.margin, cfg.gate)
        version = tracker.register_version(name, model_uri, run_id, {
            "arpipe.pipeline_run_id": pipeline_run_id, "arpipe.data_digest": digests["ingest"],
            "arpipe.output_digest": digest,
            "arpipe.tokenizer_digest": digests["tokenizer"], "arpipe.valid_bits_per_byte": f"{candidate:.6f}",
        })
        if decision.promote:
            tracker.set_alias(name, cfg.alias, version)
            tracker.tag_version(name, version, {"arpipe.promoted": "true", "arpipe.promotion_reason": decision.reason})
        else:
            tracker.tag_version(name, version, {"arpipe.promoted": "false", "arpipe.not_promoted_reason": decision.reason})
        decisions.append({
            "model": name, "version": version, "promoted": decision.promote, "gate_failed": decision.gate_failed,
            "reason": decision.reason, "candidate_valid_bpb": candidate, "champion_valid_bpb": champion_bpb,
            "champion_version": str(champion.version) if champion is not None else None,
        })
    return decisions
