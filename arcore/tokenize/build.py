"""The tokenizer stage: train on ingest's train split, write the tokenizer directory, measure on valid.

Input: ``<ingest_dir>/documents.parquet`` (see ``arcore.tokenize.corpus``). Output in ``out_dir``:
``tokenizer.json``, ``tokenizer.sha256``, ``tokenizer_meta.json`` (see ``arcore.tokenize.store``) and
``preview.txt``, a human-readable look at what was learned: the special tokens, the first merges (BPE),
a sample of the vocabulary and the first valid document cut into tokens.

Training reads a deterministic sample of ``cfg.sample_bytes`` of the train split
(``arcore.tokenize.sample``), streamed; the whole split when it is smaller. ``records`` keep the sample:
``train_documents``, ``train_bytes`` (the split), ``sample_documents``, ``sample_bytes`` (what was
trained on); the preview says it too.

Metrics (on the valid split; see ``arcore.tokenize.measure`` for how words, bytes and tokens are
counted): ``vocab_size``, ``tokens_per_word``, ``bytes_per_token``, ``unk_rate``. When the valid split is
empty only ``vocab_size`` is reported, and ``records["valid_documents"]`` is 0.
"""

from __future__ import annotations

import json
from pathlib import Path

from tokenizers import Tokenizer

from arcore.errors import InputError
from arcore.stage import Progress, StageOutput
from arcore.tokenize.config import SPECIAL_ROLES, TokenizerConfig
from arcore.tokenize.corpus import iter_document_batches, iter_texts
from arcore.tokenize.sample import TrainingSample
from arcore.tokenize.measure import TokenizerMeasures, measure_tokenizer
from arcore.io import atomic_write_bytes
from arcore.tokenize.store import (DIGEST_FILE, HF_CONFIG_FILE, HF_SPECIAL_FILE, META_FILE, TOKENIZER_FILE,
                                   save_tokenizer)
from arcore.tokenize.trainers import train_tokenizer

PREVIEW_FILE = "preview.txt"
_STEPS = 3
_MEASURE_CHARS = 1 << 20  # characters of valid text encoded per batch


def build_tokenizer(cfg: TokenizerConfig, ingest_dir: Path, out_dir: Path, progress: Progress = None) -> StageOutput:
    """Train ``cfg.kind`` on the train split, save it into ``out_dir``, and measure it on valid."""
    out_dir = Path(out_dir)
    sample = TrainingSample(ingest_dir, "train", cfg.sample_bytes)
    try:
        tokenizer = train_tokenizer(cfg, sample)
    except InputError:
        if sample.documents == 0 and sample.split_documents > 0:
            raise InputError(
                f"tokenizer.sample_bytes={cfg.sample_bytes} selected none of the train split's "
                f"{sample.split_documents} documents ({sample.split_bytes} bytes): raise tokenizer.sample_bytes"
            ) from None
        raise
    _report(progress, 1)
    digest = save_tokenizer(tokenizer, cfg, out_dir)
    _report(progress, 2)
    unk_id = tokenizer.token_to_id(cfg.unk_token)
    # Small batches: HF keeps every Encoding of a batch (ids, offsets, token strings: ~100 bytes a token)
    # until it returns, so 8 MB batches of valid text peaked at 1.2 GB on a 1 GB corpus.
    valid_batches = iter_document_batches(ingest_dir, "valid", max_documents=256, max_chars=_MEASURE_CHARS)
    measures = measure_tokenizer(tokenizer, (texts for _, texts in valid_batches), unk_id)
    first_valid = next(iter_texts(ingest_dir, "valid"), None)
    preview = render_preview(tokenizer, cfg, digest, measures, first_valid, sample)
    atomic_write_bytes(out_dir / PREVIEW_FILE, preview.encode())
    _report(progress, 3)

    metrics: dict[str, float] = {"vocab_size": float(tokenizer.get_vocab_size())}
    if measures.documents:
        metrics.update(
            tokens_per_word=measures.tokens_per_word,
            bytes_per_token=measures.bytes_per_token,
            unk_rate=measures.unk_rate,
        )
    records = {
        "vocab_size": tokenizer.get_vocab_size(),
        "valid_documents": measures.documents,
        "valid_words": measures.words,
        "valid_tokens": measures.tokens,
        "valid_unk_tokens": measures.unk_tokens,
        **sample.records(),
    }
    return StageOutput(
        metrics=metrics, records=records, artifacts=(TOKENIZER_FILE, DIGEST_FILE, META_FILE, PREVIEW_FILE, HF_CONFIG_FILE,
                   HF_SPECIAL_FILE)
    )


def render_preview(
    tokenizer: Tokenizer,
    cfg: TokenizerConfig,
    digest: str,
    measures: TokenizerMeasures,
    sample_text: str | None,
    sample: TrainingSample | None = None,
    n_merges: int = 40,
    n_vocab: int = 80,
) -> str:
    """Plain text a person can skim: settings, special ids, first merges, vocabulary sample, an example."""
    lines = [
        f"kind: {cfg.kind}   vocab_size: {tokenizer.get_vocab_size()} (asked {cfg.vocab_size})   "
        f"normalization: {cfg.normalization}   min_frequency: {cfg.min_frequency}",
        f"sha256(tokenizer.json): {digest}",
        "special tokens: "
        + ", ".join(
            f"{role}={tok!r}:{tokenizer.token_to_id(tok)}" for role, tok in zip(SPECIAL_ROLES, cfg.special_tokens)
        ),
    ]
    if sample is not None:
        lines.append(
            f"trained on: {sample.documents} of {sample.split_documents} train documents, {sample.bytes} of "
            f"{sample.split_bytes} bytes" + ("" if sample.complete else f" (sample_bytes={cfg.sample_bytes})")
        )
    if measures.documents:
        lines.append(
            f"valid: {measures.documents} documents, {measures.words} words, {measures.tokens} tokens; "
            f"tokens/word {measures.tokens_per_word:.3f}, bytes/token {measures.bytes_per_token:.3f}, "
            f"unk rate {measures.unk_rate:.4%}"
        )
    model = json.loads(tokenizer.to_str())["model"]
    if "merges" in model:
        lines += ["", f"first {n_merges} merges (in the order learned):"]
        for rank, merge in enumerate(model["merges"][:n_merges]):
            left, right = merge if isinstance(merge, list) else merge.split(" ", 1)
            lines.append(f"{rank:5d}  {left!r} + {right!r} -> {left + right!r}")
    lines += ["", f"vocabulary sample (first {n_vocab} ids after the special tokens; repr shows spaces):"]
    first = len(cfg.special_tokens)
    for token_id in range(first, min(first + n_vocab, tokenizer.get_vocab_size())):
        token = tokenizer.id_to_token(token_id)
        lines.append(f"{token_id:6d}  {token!r}  -> {tokenizer.decode([token_id])!r}")
    if sample_text is not None:
        excerpt = sample_text[:300]
        encoding = tokenizer.encode(excerpt, add_special_tokens=False)
        lines += ["", "first valid document (first 300 characters), as tokens:", repr(excerpt), str(encoding.tokens)]
    return "\n".join(lines) + "\n"


def _report(progress: Progress, done: int) -> None:
    if progress is not None:
        progress(done, _STEPS)
