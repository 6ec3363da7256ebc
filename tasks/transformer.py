"""transformer: token shards -> trained causal Transformer LM (arcore.transformer.stage.build_transformer).

Same trainer, checkpoints and per-step MLflow logging as the rnn stage; runs when ``models`` in the
config lists it (``configs/transformer.toml``).
"""

from prefect import task

from arcore.config import TrackingConfig
from arcore.transformer.config import TransformerConfig
from arcore.transformer.stage import build_transformer
from tasks.contract import StageContext, StageResult, run_stage, stage_cache_key
from tasks.tracking import MetricBuffer, Tracker


@task(name="transformer", cache_key_fn=stage_cache_key, persist_result=True)
def transformer(ctx: StageContext) -> StageResult:
    cfg = TransformerConfig.model_validate(ctx.config)
    tokenizer_dir, shards_dir = ctx.upstream_path("tokenizer"), ctx.upstream_path("shards")
    tracker = Tracker(TrackingConfig.model_validate(ctx.tracking)) if ctx.mlflow_run_id else None

    def compute(out_dir, progress):
        steps = MetricBuffer(tracker, ctx.mlflow_run_id)
        epochs = MetricBuffer(tracker, ctx.mlflow_run_id, every=1, prefix="epoch.")
        try:
            return build_transformer(cfg, tokenizer_dir, shards_dir, out_dir, progress,
                                     on_step=steps.add, on_epoch=epochs.add)
        finally:
            steps.flush()
            epochs.flush()

    return run_stage(ctx, compute, resumable=True)
