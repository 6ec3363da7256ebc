"""rnn: token shards -> trained recurrent LM (arcore.rnn.stage.build_rnn), resumable after a kill.

Per-step loss, learning rate and tokens/s, and per-epoch valid figures and gradient diagnostics, go to the
stage's MLflow run as they happen (buffered), so a long training shows progress in the UI.
"""

from functools import partial

from arcore.rnn.config import RNNConfig
from arcore.rnn.stage import build_rnn
from tasks.contract import StageContext, StageResult, run_training_stage, stage_task


@stage_task("rnn")
def rnn(ctx: StageContext) -> StageResult:
    return run_training_stage(ctx, partial(build_rnn, RNNConfig.model_validate(ctx.config)))
