"""shards: documents + tokenizer -> Parquet token shards per split (arcore.shards.build_shards).

Resumable: a relaunch after a kill continues in the same partial directory from the first shard
missing from the split's manifest.
"""

from prefect import task

from arcore.shards import ShardsConfig
from arcore.shards.build import build_shards
from tasks.contract import StageContext, StageResult, run_stage, stage_cache_key


@task(name="shards", cache_key_fn=stage_cache_key, persist_result=True)
def shards(ctx: StageContext) -> StageResult:
    cfg = ShardsConfig.model_validate(ctx.config)
    ingest_dir, tokenizer_dir = ctx.upstream_path("ingest"), ctx.upstream_path("tokenizer")
    return run_stage(
        ctx, lambda out_dir, progress: build_shards(cfg, ingest_dir, tokenizer_dir, out_dir, progress), resumable=True
    )
