"""The rnn stage: token shards -> a trained recurrent language model, its diagnostics and valid figures.

In: the tokenizer directory and the shards directory; the train split is read memory-mapped from a flat
id file the stage writes once (``arcore.neural.stage``), the valid split likewise or, with
``rnn.max_valid_tokens``, as a sample of whole documents. Out, in ``out_dir`` (resumable: a relaunch after a
kill continues from ``checkpoint.pt``): ``model/`` (best-epoch weights + config, loaded with
``weights_only=True``), ``checkpoint.pt``, ``history.json`` (per-epoch figures),
``gradient_norms.png`` (the norm of dL/dh_t at each step t of one BPTT window of valid data: vanishing
gradients made visible). Metrics: the trainer's, plus valid bits per byte and perplexity scored per
document with ``RNNLanguageModel.score`` (the ``arcore.evaluate`` conventions every model shares).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np

from arcore.io import atomic_write_json
from arcore.neural.stage import read_training_data, score_valid
from arcore.rnn.config import RNNConfig
from arcore.rnn.diagnostics import plot_gradient_norms
from arcore.rnn.lm import RNNLanguageModel
from arcore.rnn.train import MODEL_DIR, EpochCallback, StepCallback, train_rnn
from arcore.stage import Progress, StageOutput
from arcore.tokenize.store import LoadedTokenizer, load_tokenizer

MODEL_SUBDIR = MODEL_DIR


def build_rnn(cfg: RNNConfig, tokenizer_dir: Path, shards_dir: Path, out_dir: Path, progress: Progress = None,
              on_step: Optional[StepCallback] = None, on_epoch: Optional[EpochCallback] = None) -> StageOutput:
    tok = load_tokenizer(tokenizer_dir)
    data = read_training_data(shards_dir, tok.sha256, out_dir, cfg.max_valid_tokens)
    result = train_rnn(cfg, data.train, data.valid, tok.vocab_size, out_dir,
                       valid_bytes=data.valid_counts.source_bytes, on_step=on_step, on_epoch=on_epoch, resume=True,
                       progress=progress)
    ev = score_valid(load_rnn(out_dir, tok), data, tok.unk_id)
    data.remove()
    atomic_write_json(Path(out_dir) / "history.json", [dict(h) for h in result.history])
    if result.grad_h_norms:
        plot_gradient_norms({cfg.cell: np.asarray(result.grad_h_norms)}, Path(out_dir) / "gradient_norms.png",
                            title=f"{cfg.cell}: ||dL/dh_t|| over one BPTT window (valid)")
    out = result.stage_output()
    metrics = {**out.metrics, "valid_bits_per_byte": ev.bits_per_byte, "valid_perplexity": ev.perplexity_per_token,
               "valid_tokens_evaluated": float(ev.tokens)}
    artifacts = (*out.artifacts, "history.json") + (("gradient_norms.png",) if result.grad_h_norms else ())
    return StageOutput(metrics=metrics, records=out.records, artifacts=artifacts)


def load_rnn(stage_dir: Path, tok: LoadedTokenizer, device: str = "cpu") -> RNNLanguageModel:
    return RNNLanguageModel.from_dir(Path(stage_dir) / MODEL_SUBDIR, bos_id=tok.bos_id, eos_id=tok.eos_id,
                                     device=device)
