"""rnn: token shards -> trained recurrent LM (arcore.rnn.stage.build_rnn), resumable after a kill.

Per-step loss, learning rate and tokens/s, and per-epoch valid figures and gradient diagnostics, go to the
stage's MLflow run as they happen (buffered), so a long training shows progress in the UI.
"""

from prefect import task

from arcore.config import TrackingConfig
from arcore.rnn.config import RNNConfig
from arcore.rnn.stage import build_rnn
from tasks.contract import StageContext, StageResult, run_stage, stage_cache_key
from tasks.tracking import MetricBuffer, Tracker


@task(name="rnn", cache_key_fn=stage_cache_key, persist_result=True)
def rnn(ctx: StageContext) -> StageResult:
    cfg = RNNConfig.model_validate(ctx.config)
    tokenizer_dir, shards_dir = ctx.upstream_path("tokenizer"), ctx.upstream_path("shards")
    tracker = Tracker(TrackingConfig.model_validate(ctx.tracking)) if ctx.mlflow_run_id else None

    def compute(out_dir, progress):
        steps = MetricBuffer(tracker, ctx.mlflow_run_id)
        epochs = MetricBuffer(tracker, ctx.mlflow_run_id, every=1, prefix="epoch.")
        try:
            return build_rnn(cfg, tokenizer_dir, shards_dir, out_dir, progress, on_step=steps.add, on_epoch=epochs.add)
        finally:
            steps.flush()
            epochs.flush()

    return run_stage(ctx, compute, resumable=True)
