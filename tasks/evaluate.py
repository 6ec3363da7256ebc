"""evaluate: every model side by side on valid and test, plus samples (arcore.compare.build_evaluation).

Besides the stage files it publishes the comparison as a Prefect table artifact; the MLflow table comes
from ``comparison.table.json`` through the tracking module.
"""

import json

from prefect.artifacts import create_markdown_artifact, create_table_artifact

from arcore.compare import EvaluateConfig, build_evaluation
from arcore.generate import load_models
from arcore.tokenize.store import load_tokenizer
from tasks.contract import StageContext, StageResult, run_stage, stage_task


@stage_task("evaluate")
def evaluate(ctx: StageContext) -> StageResult:
    cfg = EvaluateConfig.model_validate(ctx.config)
    tok = load_tokenizer(ctx.upstream_path("tokenizer"))
    shards_dir = ctx.upstream_path("shards")

    def compute(out_dir, progress):
        models = load_models(tok, {name: ctx.upstream_path(name) for name in ctx.upstream})
        return build_evaluation(cfg, tok, shards_dir, models, out_dir, progress)

    result = run_stage(ctx, compute)
    out = ctx.dir.path
    create_table_artifact(key="model-comparison", table=json.loads((out / "comparison.table.json").read_text()),
                          description="models ranked by bits per byte")
    create_markdown_artifact(key="model-samples", markdown=(out / "samples.md").read_text(),
                             description="one sample per decoder per model")
    return result
