"""register: put each newly trained model in the MLflow Model Registry and move ``champion`` if it wins.

Not a cached stage: it runs after ``evaluate`` in every pipeline run, and does nothing for a model whose
stage was cached (that model is already registered). Champion and candidate are both scored on the
current valid text with their own tokenizers (``arcore.generate.score_text``), so the comparison is on
the same data even when the champion came from another config; ``arcore.promotion.decide`` decides.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE

from arcore.generate import FAMILY_STAGE, load_bundle, score_text
from arcore.promotion import RegistryConfig, decide
from arcore.tokenize.corpus import iter_texts
from tasks.tracking import Tracker


def _valid_bpb(tracker: Tracker, run_id: str, artifact: str, texts: list[str], tmp: Path) -> float:
    tok, model, _ = load_bundle(tracker.download_bundle(run_id, artifact, tmp))
    return score_text(model, tok, texts).bits_per_byte


@task(name="register", cache_policy=NO_CACHE)
def register(cfg: RegistryConfig, tracker: Tracker, pipeline_run_id: str, stages: list[dict],
             digests: dict[str, str], ingest_dir: str) -> list[dict]:
    texts = list(iter_texts(Path(ingest_dir), "valid"))
    by_stage = {s["stage"]: s for s in stages}
    decisions = []
    for family in cfg.families:
        stage = by_stage.get(FAMILY_STAGE.get(family, family))  # mixtures are exported by evaluate
        if stage is None or stage["state"] != "completed":
            continue  # not trained in this run: its model is already registered
        name, run_id = f"{cfg.prefix}{family}", stage["mlflow_run_id"]
        if f"arpipe.model.{family}" not in tracker.client.get_run(run_id).data.tags:
            continue  # no generation model logged (tracking.max_logged_model_mb): nothing to register
        with tempfile.TemporaryDirectory(prefix="arpipe-register-") as tmp:
            candidate = _valid_bpb(tracker, run_id, family, texts, Path(tmp) / "candidate")
            champion = tracker.version_by_alias(name, cfg.alias)
            champion_bpb = (_valid_bpb(tracker, champion.run_id, family, texts, Path(tmp) / "champion")
                            if champion is not None else None)
        decision = decide(candidate, champion_bpb, cfg.margin, cfg.gate)
        version = tracker.register_version(name, run_id, family, {
            "arpipe.pipeline_run_id": pipeline_run_id, "arpipe.data_digest": digests["ingest"],
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
