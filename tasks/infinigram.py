"""infinigram: token shards -> suffix-array index of the train split and the infini-gram model
(arcore.infinigram.stage.build_infinigram)."""

from arcore.infinigram.config import InfiniGramConfig
from arcore.infinigram.stage import build_infinigram
from tasks.contract import StageContext, StageResult, run_stage, stage_task


@stage_task("infinigram")
def infinigram(ctx: StageContext) -> StageResult:
    cfg = InfiniGramConfig.model_validate(ctx.config)
    tokenizer_dir, shards_dir = ctx.upstream_path("tokenizer"), ctx.upstream_path("shards")
    return run_stage(ctx, lambda out_dir, progress: build_infinigram(cfg, tokenizer_dir, shards_dir, out_dir, progress))
