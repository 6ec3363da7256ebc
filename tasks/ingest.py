"""ingest: raw inputs -> documents table (arcore.ingest.build_ingest)."""

from arcore.ingest import IngestConfig, build_ingest
from tasks.contract import StageContext, StageResult, run_stage, stage_task


@stage_task("ingest")
def ingest(ctx: StageContext) -> StageResult:
    cfg = IngestConfig.model_validate(ctx.config)
    return run_stage(ctx, lambda out_dir, progress: build_ingest(cfg, out_dir, progress))
