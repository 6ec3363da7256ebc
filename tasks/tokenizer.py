"""tokenizer: documents (train split) -> tokenizer.json + preview (arcore.tokenize.build_tokenizer)."""

from arcore.tokenize import TokenizerConfig
from arcore.tokenize.build import build_tokenizer
from tasks.contract import StageContext, StageResult, run_stage, stage_task


@stage_task("tokenizer")
def tokenizer(ctx: StageContext) -> StageResult:
    cfg = TokenizerConfig.model_validate(ctx.config)
    ingest_dir = ctx.upstream_path("ingest")
    return run_stage(ctx, lambda out_dir, progress: build_tokenizer(cfg, ingest_dir, out_dir, progress))
