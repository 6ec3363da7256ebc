"""ingest: raw inputs -> documents table (arcore.ingest.build_ingest)."""

from prefect import task

from arcore.ingest import IngestConfig, build_ingest
from tasks.contract import StageContext, StageResult, run_stage, stage_cache_key


@task(name="ingest", cache_key_fn=stage_cache_key, persist_result=True)
def ingest(ctx: StageContext) -> StageResult:
    cfg = IngestConfig.model_validate(ctx.config)
    return run_stage(ctx, lambda out_dir, progress: build_ingest(cfg, out_dir, progress))
