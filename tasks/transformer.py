"""transformer: token shards -> trained causal Transformer LM (arcore.transformer.stage.build_transformer).

Same trainer, checkpoints and per-step MLflow logging as the rnn stage; runs when ``models`` in the
config lists it (``configs/transformer.toml``).
"""

from functools import partial

from arcore.transformer.config import TransformerConfig
from arcore.transformer.stage import build_transformer
from tasks.contract import StageContext, StageResult, run_training_stage, stage_task


@stage_task("transformer")
def transformer(ctx: StageContext) -> StageResult:
    return run_training_stage(ctx, partial(build_transformer, TransformerConfig.model_validate(ctx.config)))
