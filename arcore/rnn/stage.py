"""The rnn stage: token shards -> a trained recurrent language model, its diagnostics and valid figures.

In: the tokenizer directory and the shards directory. Out, in ``out_dir`` (resumable: a relaunch after a
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

from arcore.evaluate import evaluate_model, split_counts
from arcore.io import atomic_write_json
from arcore.rnn.config import RNNConfig
from arcore.rnn.diagnostics import plot_gradient_norms
from arcore.rnn.lm import RNNLanguageModel
from arcore.rnn.train import MODEL_DIR, EpochCallback, StepCallback, train_rnn
from arcore.shards.reader import read_ids
from arcore.stage import Progress, StageOutput
from arcore.tokenize.store import LoadedTokenizer, load_tokenizer

MODEL_SUBDIR = MODEL_DIR


def build_rnn(cfg: RNNConfig, tokenizer_dir: Path, shards_dir: Path, out_dir: Path, progress: Progress = None,
              on_step: Optional[StepCallback] = None, on_epoch: Optional[EpochCallback] = None) -> StageOutput:
    tok = load_tokenizer(tokenizer_dir)
    train = read_ids(shards_dir, "train", tok.sha256)
    valid = read_ids(shards_dir, "valid", tok.sha256)
    valid_counts = split_counts(shards_dir, "valid")
    result = train_rnn(cfg, train, valid, tok.vocab_size, out_dir, valid_bytes=valid_counts.source_bytes,
                       on_step=on_step, on_epoch=on_epoch, resume=True, progress=progress)
    ev = evaluate_model(load_rnn(out_dir, tok), valid, valid_counts, tok.unk_id)
    atomic_write_json(Path(out_dir) / "history.json", [dict(h) for h in result.history])
    if result.grad_h_norms:
        plot_gradient_norms({cfg.cell: np.asarray(result.grad_h_norms)}, Path(out_dir) / "gradient_norms.png",
                            title=f"{cfg.cell}: ||dL/dh_t|| over one BPTT window (valid)")
    out = result.stage_output()
    metrics = {**out.metrics, "valid_bits_per_byte": ev.bits_per_byte, "valid_perplexity": ev.perplexity_per_token}
    artifacts = (*out.artifacts, "history.json") + (("gradient_norms.png",) if result.grad_h_norms else ())
    return StageOutput(metrics=metrics, records=out.records, artifacts=artifacts)


def load_rnn(stage_dir: Path, tok: LoadedTokenizer, device: str = "cpu") -> RNNLanguageModel:
    return RNNLanguageModel.from_dir(Path(stage_dir) / MODEL_SUBDIR, bos_id=tok.bos_id, eos_id=tok.eos_id,
                                     device=device)
