"""What a neural training stage reads: the train split memory-mapped, the valid split (or its sample), counts.

In: the shards directory, the tokenizer, the stage's output directory and its ``max_valid_tokens``. Out: a
``TrainingData`` whose ``train`` is a ``TokenFile`` (the train split's ids written once, shard by shard, to
``<out_dir>/.data/train.ids.npy`` and memory-mapped), whose ``valid`` is either the same for the valid
split or, with ``max_valid_tokens``, the in-memory ids of a deterministic sample of whole valid documents
(``arcore.heldout``), and the ``TextCounts`` that match ``valid``. ``score_valid`` scores a model on it with
the ``arcore.evaluate`` conventions, streaming a ``TokenFile`` chunk by chunk.

``.data`` starts with a dot, so the stage contract leaves it out of the output's manifest and digest
(``arcore.stage.build``); it survives a kill inside the resumable partial directory (a relaunch reuses the
complete files) and ``remove`` deletes it once the stage has finished with it, so a committed output does
not keep a second copy of the corpus.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from arcore.evaluate import Evaluation, TextCounts, evaluate_model, evaluate_stream, split_counts
from arcore.lm import LanguageModel
from arcore.neural.data import Ids, TokenFile, id_chunks, read_split_tokens

DATA_DIR = ".data"


@dataclass(frozen=True)
class TrainingData:
    train: TokenFile
    valid: Ids
    valid_counts: TextCounts
    valid_split_tokens: int
    work_dir: Path

    @property
    def valid_sampled(self) -> bool:
        return len(self.valid) < self.valid_split_tokens

    def first_valid_ids(self, n: int):
        """The first ``n`` valid ids (for a look at one document without reading the split)."""
        return next(id_chunks(self.valid, n))

    def remove(self) -> None:
        shutil.rmtree(self.work_dir, ignore_errors=True)


def read_training_data(shards_dir: Path, tokenizer_sha256: str, out_dir: Path,
                       max_valid_tokens: Optional[int] = None) -> TrainingData:
    from arcore.heldout import sample_documents
    from arcore.shards.reader import split_stats

    work_dir = Path(out_dir) / DATA_DIR
    train = read_split_tokens(shards_dir, "train", work_dir, tokenizer_sha256)
    valid_tokens = split_stats(shards_dir, "valid").tokens
    if max_valid_tokens and max_valid_tokens < valid_tokens:
        sample = sample_documents(shards_dir, "valid", max_valid_tokens, tokenizer_sha256)
        return TrainingData(train, sample.ids, sample.counts, valid_tokens, work_dir)
    valid = read_split_tokens(shards_dir, "valid", work_dir, tokenizer_sha256)
    return TrainingData(train, valid, split_counts(shards_dir, "valid"), valid_tokens, work_dir)


def score_valid(model: LanguageModel, data: TrainingData, unk_id: int) -> Evaluation:
    """The model's valid figures (per document, ``arcore.evaluate`` conventions) on ``data.valid``."""
    if isinstance(data.valid, TokenFile):
        return evaluate_stream(model, data.valid.chunks(), data.valid_counts, unk_id)
    return evaluate_model(model, data.valid, data.valid_counts, unk_id)
