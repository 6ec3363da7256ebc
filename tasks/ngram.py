"""ngram: token shards -> counts, histogram and n-gram models (arcore.ngram.stage.build_ngram).

With ``--runner dask`` each counting partition (windows of the stream grouped by their first tokens) is
sorted and counted by a Dask worker (``tasks/fanout.py``) and the results appended here in order; the
tables and models are identical to a local run.
"""

from arcore.ngram.fit import NGramConfig
from arcore.ngram.stage import build_ngram
from tasks.contract import StageContext, StageResult, run_stage, stage_task
from tasks.fanout import mapper_for


@stage_task("ngram")
def ngram(ctx: StageContext) -> StageResult:
    cfg = NGramConfig.model_validate(ctx.config)
    tokenizer_dir, shards_dir = ctx.upstream_path("tokenizer"), ctx.upstream_path("shards")
    mapper = mapper_for(ctx, "count")
    return run_stage(ctx, lambda out_dir, progress: build_ngram(cfg, tokenizer_dir, shards_dir, out_dir, progress,
                                                                mapper))
