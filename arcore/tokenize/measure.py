"""How well a tokenizer compresses held-out text: tokens per word, bytes per token, ``<unk>`` rate.

Input: a trained tokenizer and batches of texts (the valid split). Output: ``TokenizerMeasures`` with the
raw counts and the three ratios the tokenizer stage logs.

Conventions: tokens are what ``encode`` returns for the text alone (no ``</s>``, no ``<s>``); words are
whitespace-separated (``len(text.split())``), as KenLM and WikiText count them; bytes are
``len(text.encode("utf-8"))`` without the document-boundary byte the bits-per-byte convention adds.

Example: byte-level BPE that encodes "to be or" as ["to", "Ġbe", "Ġor"] has 3 tokens, 3 words, 8 bytes:
tokens_per_word = 1.0, bytes_per_token = 8/3.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import numpy as np
from tokenizers import Tokenizer


@dataclass(frozen=True)
class TokenizerMeasures:
    documents: int
    words: int
    utf8_bytes: int
    tokens: int
    unk_tokens: int

    @property
    def tokens_per_word(self) -> float:
        return self.tokens / self.words if self.words else float("nan")

    @property
    def bytes_per_token(self) -> float:
        return self.utf8_bytes / self.tokens if self.tokens else float("nan")

    @property
    def unk_rate(self) -> float:
        return self.unk_tokens / self.tokens if self.tokens else float("nan")


def count_words(text: str) -> int:
    """Whitespace words: ``"to  be\\nor"`` -> 3."""
    return len(text.split())


def measure_tokenizer(tokenizer: Tokenizer, batches: Iterable[list[str]], unk_id: int) -> TokenizerMeasures:
    """Encode every batch of texts and count documents, words, bytes, tokens and ``<unk>`` tokens."""
    documents = words = utf8_bytes = tokens = unk = 0
    for texts in batches:
        for encoding, text in zip(tokenizer.encode_batch_fast(texts, add_special_tokens=False), texts):
            ids = np.asarray(encoding.ids, dtype=np.int64)
            tokens += ids.size
            unk += int(np.count_nonzero(ids == unk_id))
            words += count_words(text)
            utf8_bytes += len(text.encode("utf-8"))
            documents += 1
    return TokenizerMeasures(documents, words, utf8_bytes, tokens, unk)
