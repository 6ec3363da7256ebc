"""The transformer stage: token shards -> a trained causal Transformer LM, its attention map, valid figures.

In: the tokenizer directory and the shards directory, read as the rnn stage reads them (the train split
memory-mapped, ``arcore.neural.stage``; ``transformer.max_valid_tokens`` samples the valid split). Out, in
``out_dir`` (resumable: a relaunch after a
kill continues from ``checkpoint.pt``): ``model/`` (best-epoch weights + config, loaded with
``weights_only=True``), ``checkpoint.pt``, ``history.json`` (per-epoch figures), ``attention.png`` (each
head of the last block on the first ``min(context, 48)`` tokens of the first valid document: the causal
mask made visible). Metrics: the trainer's, plus valid bits per byte and perplexity scored per document
with ``TransformerLanguageModel.score`` (the ``arcore.evaluate`` conventions every model shares).
Mirrors ``arcore.rnn.stage``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np

from arcore.io import atomic_write_json
from arcore.neural.stage import read_training_data, score_valid
from arcore.neural.train import MODEL_DIR, EpochCallback, StepCallback
from arcore.stage import Progress, StageOutput
from arcore.tokenize.store import LoadedTokenizer, load_tokenizer
from arcore.transformer.attention_map import plot_attention
from arcore.transformer.config import TransformerConfig
from arcore.transformer.lm import TransformerLanguageModel
from arcore.transformer.train import train_transformer

MODEL_SUBDIR = MODEL_DIR
ATTENTION_PNG = "attention.png"
ATTENTION_TOKENS = 48  # enough to see the pattern, few enough to read the token labels


def attention_sample(ids: np.ndarray, eos_id: int, length: int) -> np.ndarray:
    """The inputs the model reads for the first document: ``</s>`` (document start) and its first tokens.

    >>> attention_sample(np.array([5, 6, 2, 7, 2]), eos_id=2, length=8).tolist()
    [2, 5, 6]
    """
    ends = np.flatnonzero(np.asarray(ids) == eos_id)
    first = np.asarray(ids[: ends[0]] if len(ends) else ids)
    return np.concatenate([[eos_id], first])[:length].astype(np.int64)


def build_transformer(cfg: TransformerConfig, tokenizer_dir: Path, shards_dir: Path, out_dir: Path,
                      progress: Progress = None, on_step: Optional[StepCallback] = None,
                      on_epoch: Optional[EpochCallback] = None) -> StageOutput:
    tok = load_tokenizer(tokenizer_dir)
    data = read_training_data(shards_dir, tok.sha256, out_dir, cfg.max_valid_tokens)
    result = train_transformer(cfg, data.train, data.valid, tok.vocab_size, out_dir,
                               valid_bytes=data.valid_counts.source_bytes, on_step=on_step, on_epoch=on_epoch,
                               resume=True, progress=progress)
    lm = load_transformer(out_dir, tok)
    ev = score_valid(lm, data, tok.unk_id)
    atomic_write_json(Path(out_dir) / "history.json", [dict(h) for h in result.history])
    length = min(cfg.context, ATTENTION_TOKENS)
    sample = attention_sample(data.first_valid_ids(length), tok.eos_id, length)
    data.remove()
    plot_attention(lm.model, sample, Path(out_dir) / ATTENTION_PNG, labels=_token_label(tok),
                   title=f"last-layer attention on the first valid document ({len(sample)} tokens)")
    out = result.stage_output()
    metrics = {**out.metrics, "valid_bits_per_byte": ev.bits_per_byte, "valid_perplexity": ev.perplexity_per_token,
               "valid_tokens_evaluated": float(ev.tokens)}
    return StageOutput(metrics=metrics, records=out.records, artifacts=(*out.artifacts, "history.json", ATTENTION_PNG))


def load_transformer(stage_dir: Path, tok: LoadedTokenizer, device: str = "cpu") -> TransformerLanguageModel:
    return TransformerLanguageModel.from_dir(Path(stage_dir) / MODEL_SUBDIR, bos_id=tok.bos_id, eos_id=tok.eos_id,
                                             device=device)


def _token_label(tok: LoadedTokenizer):
    inner = getattr(tok, "tokenizer", None)
    if inner is None or not hasattr(inner, "id_to_token"):
        return None
    return lambda i: inner.id_to_token(i) or str(i)
