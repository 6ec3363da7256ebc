"""Tokenizer settings: which subword algorithm, how large a vocabulary, which special tokens.

Input: values from the pipeline config's ``tokenizer`` section. Output: a frozen, validated
``TokenizerConfig``; invalid values are refused by pydantic with the key named, before any training.

The special tokens always take the first four ids, in the order of ``SPECIAL_ROLES``:
``<s>`` = 0 (bos, context only), ``</s>`` = 1 (eos, ends every document in the shards), ``<unk>`` = 2,
``<pad>`` = 3. Fixing them makes ids comparable across kinds and lets a reader check a tokenizer file
cheaply.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

# Byte-level BPE starts from all 256 byte symbols (GPT-2's byte-to-unicode map), so its vocabulary can
# never be smaller than the bytes plus the special tokens.
BYTE_ALPHABET_SIZE = 256
SPECIAL_ROLES = ("bos", "eos", "unk", "pad")
MAX_VOCAB_SIZE = 1 << 24

TokenizerKind = Literal["bpe", "wordpiece", "unigram", "char", "word"]
Normalization = Literal["none", "nfc", "nfkc", "lowercase", "nfkc_lowercase"]


class TokenizerConfig(BaseModel):
    """How to train the tokenizer on the train split.

    kind:
      - ``bpe``: byte-level BPE (GPT-2 style; Sennrich et al. 2016 merges over bytes). Never emits
        ``<unk>`` and decodes every string back exactly (``normalization="none"``).
      - ``wordpiece``: WordPiece (BERT), whitespace+punctuation pre-split, ``##`` continuation prefix.
      - ``unigram``: Unigram LM (Kudo 2018), SentencePiece-style ``▁`` for spaces.
      - ``char``: one token per Unicode code point; the ``vocab_size - 4`` most frequent characters are
        kept, the rest map to ``<unk>``.
      - ``word``: one token per whitespace-separated word; the ``vocab_size - 4`` most frequent words
        are kept, the rest map to ``<unk>`` (counted as the unk rate).
    vocab_size: target size including the four special tokens. BPE needs at least 256 + 4.
    min_frequency: a merge / piece / char / word seen fewer times in train is not added. Unigram
      ignores it (its EM prunes pieces by likelihood instead).
    normalization: Unicode normalization applied before pre-tokenization. Anything but ``none`` breaks
      exact round trips (``decode(encode(x))`` returns the normalized text).
    sample_bytes: train on a deterministic sample of about this many UTF-8 bytes of the train split
      (whole documents chosen by a hash of their id, see ``arcore.tokenize.sample``); a split no larger
      than this is used whole. The default, 128 MiB, trains byte-level BPE 4096 in about a minute on 2
      cores (BENCHMARKS.md: ~20 s CPU per 50 MB, linear, peak RSS ~0.4 GB), so a 1 GB corpus trains in
      minutes; the bundled 1.1 MB sample is used whole. ``min_frequency`` counts within the sample.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: TokenizerKind = "bpe"
    # Small on purpose: the default pipeline trains on Tiny Shakespeare (1.1 MB) in seconds on 2 cores.
    # 2^24 is far above any vocabulary a corpus reaches (the largest in use are ~2^18) and keeps the
    # trainers' up-front allocations bounded: HF reserves vocab_size entries, and 2^32 aborted the Rust
    # side allocating 283 GB. Reachability on the actual train split is checked by arcore.preflight.
    vocab_size: int = Field(default=4096, ge=len(SPECIAL_ROLES) + 1, le=MAX_VOCAB_SIZE)
    min_frequency: int = Field(default=2, ge=1)
    normalization: Normalization = "none"
    sample_bytes: int = Field(default=128 << 20, ge=1)
    bos_token: str = Field(default="<s>", min_length=1)
    eos_token: str = Field(default="</s>", min_length=1)
    unk_token: str = Field(default="<unk>", min_length=1)
    pad_token: str = Field(default="<pad>", min_length=1)

    @model_validator(mode="after")
    def _check(self) -> "TokenizerConfig":
        specials = self.special_tokens
        if len(set(specials)) != len(specials):
            raise ValueError(f"special tokens must be distinct, got {list(specials)}")
        if any(tok != tok.strip() or not tok.split() == [tok] for tok in specials):
            raise ValueError(f"special tokens may not contain whitespace, got {list(specials)}")
        minimum = BYTE_ALPHABET_SIZE + len(specials)
        if self.kind == "bpe" and self.vocab_size < minimum:
            raise ValueError(
                f"vocab_size={self.vocab_size} is smaller than the byte-level alphabet: byte-level BPE "
                f"needs at least {minimum} (256 bytes + {len(specials)} special tokens); raise vocab_size "
                f"or use kind='char'"
            )
        return self

    @property
    def special_tokens(self) -> tuple[str, str, str, str]:
        """The special tokens in id order: bos, eos, unk, pad (ids 0, 1, 2, 3)."""
        return (self.bos_token, self.eos_token, self.unk_token, self.pad_token)
