"""shards: documents + tokenizer -> Parquet token shards per split (arcore.shards.build_shards).

Resumable: a relaunch after a kill continues in the same partial directory from the first shard
missing from the split's manifest. With ``--runner dask`` each batch is encoded by a Dask worker
(``tasks/fanout.py``); the shards are byte-identical either way.
"""

from arcore.shards import ShardsConfig
from arcore.shards.build import build_shards
from tasks.contract import StageContext, StageResult, run_stage, stage_task
from tasks.fanout import mapper_for


@stage_task("shards")
def shards(ctx: StageContext) -> StageResult:
    cfg = ShardsConfig.model_validate(ctx.config)
    ingest_dir, tokenizer_dir = ctx.upstream_path("ingest"), ctx.upstream_path("tokenizer")
    mapper = mapper_for(ctx, "encode")  # None unless the run's runner is dask
    return run_stage(
        ctx, lambda out_dir, progress: build_shards(cfg, ingest_dir, tokenizer_dir, out_dir, progress, mapper),
        resumable=True,
    )
