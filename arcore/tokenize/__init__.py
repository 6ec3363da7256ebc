"""Tokenizer stage: train a subword/char/word tokenizer on the train split and save it with its digest.

Modules: ``config`` (TokenizerConfig), ``corpus`` (stream a split's documents from ingest), ``trainers``
(the five kinds and ``train_tokenizer``), ``store`` (save/load with digest check), ``measure``
(tokens per word, bytes per token, unk rate), ``build`` (``build_tokenizer``, the stage function).
"""

from arcore.tokenize.build import build_tokenizer
from arcore.tokenize.config import TokenizerConfig
from arcore.tokenize.measure import TokenizerMeasures, count_words, measure_tokenizer
from arcore.tokenize.store import LoadedTokenizer, load_tokenizer, read_digest, save_tokenizer
from arcore.tokenize.trainers import train_tokenizer

__all__ = [
    "TokenizerConfig",
    "TokenizerMeasures",
    "LoadedTokenizer",
    "build_tokenizer",
    "count_words",
    "load_tokenizer",
    "measure_tokenizer",
    "read_digest",
    "save_tokenizer",
    "train_tokenizer",
]
