"""Train a tokenizer of one of five kinds on an iterable of texts with HF ``tokenizers``.

Input: a ``TokenizerConfig`` and the train split's texts (an iterable, consumed once, streamed).
Output: a ``tokenizers.Tokenizer`` whose ids 0..3 are ``<s> </s> <unk> <pad>`` and whose other ids are
what the trainer learned. No post-processor: the tokenizer encodes text only; the shards stage appends
``</s>`` after every document itself, so ``encode`` gives the same ids everywhere.

Each kind is a (normalizer, pre-tokenizer, model, decoder, trainer) tuple as the lecture compares them:

==========  ===========================  ===============  ==========================================
kind        pre-tokenizer                model / trainer  decode
==========  ===========================  ===============  ==========================================
bpe         ByteLevel (GPT-2 regex)      BPE              ByteLevel: exact for any string
wordpiece   Whitespace (\\w+|[^\\w\\s]+)   WordPiece        WordPiece: joins ``##`` pieces, spaces words
unigram     Metaspace (``▁``)            Unigram          Metaspace
char        every code point alone       WordLevel        Fuse: concatenation
word        WhitespaceSplit              WordLevel        words joined by one space
==========  ===========================  ===============  ==========================================

Determinism: BPE, char, word and (after rounding its scores, see ``_canonical_unigram``) Unigram give
the same ``tokenizer.json`` bytes, hence digest, on every training of the same texts. WordPiece does
not: HF's trainer numbers the ``##`` continuation symbols in hash-map order, so ties between equally
frequent merges, and thus the vocabulary, can differ between runs.

Ties between equally frequent BPE pairs: the HF trainer keeps candidate merges in a max-heap ordered by
count, then by the pair of ids compared as a tuple (left id, right id), smaller first. Ids go to the
special tokens, then the alphabet in code point order (for byte-level BPE, the 256 GPT-2 byte symbols),
then merged tokens in merge order. In the lecture example (p, ug) beats (hug, s) at count 5 because
``p`` (alphabet) has a smaller id than ``hug`` (merge 3). Input order never matters.
"""

from __future__ import annotations

import json
from typing import Iterable, Iterator

from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

from arcore.errors import InputError
from arcore.tokenize.config import TokenizerConfig

_NORMALIZERS = {
    "none": None,
    "nfc": lambda: normalizers.NFC(),
    "nfkc": lambda: normalizers.NFKC(),
    "lowercase": lambda: normalizers.Lowercase(),
    "nfkc_lowercase": lambda: normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()]),
}


def empty_tokenizer(cfg: TokenizerConfig) -> tuple[Tokenizer, trainers.Trainer]:
    """The untrained tokenizer pipeline for ``cfg.kind`` and the trainer that fills its vocabulary."""
    specials = list(cfg.special_tokens)
    common = dict(vocab_size=cfg.vocab_size, special_tokens=specials, show_progress=False)
    if cfg.kind == "bpe":
        tokenizer = Tokenizer(models.BPE())
        # No prefix space: "hug" and " hug" stay different words, and decode(encode(x)) == x exactly.
        tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tokenizer.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            min_frequency=cfg.min_frequency, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), **common
        )
    elif cfg.kind == "wordpiece":
        tokenizer = Tokenizer(models.WordPiece(unk_token=cfg.unk_token))
        tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
        tokenizer.decoder = decoders.WordPiece(prefix="##")
        trainer = trainers.WordPieceTrainer(min_frequency=cfg.min_frequency, continuing_subword_prefix="##", **common)
    elif cfg.kind == "unigram":
        tokenizer = Tokenizer(models.Unigram())
        tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
        tokenizer.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
        trainer = trainers.UnigramTrainer(unk_token=cfg.unk_token, **common)
    elif cfg.kind == "char":
        tokenizer = Tokenizer(models.WordLevel(unk_token=cfg.unk_token))
        # Oniguruma's "." skips newlines; [\s\S] is any code point, newlines and spaces included.
        tokenizer.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
        tokenizer.decoder = decoders.Fuse()
        trainer = trainers.WordLevelTrainer(min_frequency=cfg.min_frequency, **common)
    elif cfg.kind == "word":
        tokenizer = Tokenizer(models.WordLevel(unk_token=cfg.unk_token))
        tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
        trainer = trainers.WordLevelTrainer(min_frequency=cfg.min_frequency, **common)
    else:  # pragma: no cover - the Literal type refuses other kinds
        raise ValueError(f"unknown tokenizer kind {cfg.kind!r}")
    make_normalizer = _NORMALIZERS[cfg.normalization]
    if make_normalizer is not None:
        tokenizer.normalizer = make_normalizer()
    return tokenizer, trainer


def train_tokenizer(cfg: TokenizerConfig, texts: Iterable[str]) -> Tokenizer:
    """Train a tokenizer of ``cfg.kind`` on ``texts`` (pass the train split only).

    Example (the lecture's BPE example, one text per word occurrence)::

        texts = ["hug"] * 10 + ["pug"] * 5 + ["pun"] * 12 + ["bun"] * 4 + ["hugs"] * 5
        train_tokenizer(TokenizerConfig(vocab_size=300, min_frequency=1), texts)
        # merges: u g, u n, h ug, p un, p ug, hug s, b un

    Raises ``InputError`` when ``texts`` is empty, or when the characters of the train split alone need
    more than ``vocab_size`` entries (BPE and WordPiece always keep the whole alphabet).
    """
    tokenizer, trainer = empty_tokenizer(cfg)
    seen = _Counted(texts)
    tokenizer.train_from_iterator(seen, trainer=trainer)
    if seen.count == 0:
        raise InputError("the train split has no documents: a tokenizer cannot be trained on nothing")
    if cfg.kind in ("char", "word"):
        tokenizer = _put_special_tokens_first(tokenizer, cfg)
    if cfg.kind == "unigram":
        tokenizer = _canonical_unigram(tokenizer, cfg)
    for expected_id, token in enumerate(cfg.special_tokens):
        if tokenizer.token_to_id(token) != expected_id:  # the trainers put special tokens first
            raise InputError(f"special token {token!r} did not get id {expected_id}; it occurs as text?")
    # Text that spells a special token ("</s>" in a document) is text, never a control id: otherwise a
    # document could fake a document boundary. HF does not save this flag; load_tokenizer sets it too.
    tokenizer.encode_special_tokens = True
    size = tokenizer.get_vocab_size()
    if cfg.kind in ("bpe", "wordpiece") and size > cfg.vocab_size:
        raise InputError(
            f"vocab_size={cfg.vocab_size} is smaller than the train split's alphabet ({size} symbols "
            f"incl. special tokens) for kind={cfg.kind!r}: raise vocab_size to at least {size}"
        )
    return tokenizer


def _put_special_tokens_first(tokenizer: Tokenizer, cfg: TokenizerConfig) -> Tokenizer:
    """Renumber a WordLevel vocabulary so the special tokens hold ids 0..3 and the rest follow densely.

    HF's WordLevelTrainer numbers a word that is also a special token twice (WikiText's literal
    ``<unk>`` does this), leaving holes and moving ``<s>`` off id 0. Keeping the trainer's order (most
    frequent first) and dropping the duplicates gives the dense layout every stage expects.
    """
    specials = list(cfg.special_tokens)
    learned = sorted(tokenizer.get_vocab(with_added_tokens=False).items(), key=lambda item: item[1])
    vocab = {token: i for i, token in enumerate(specials)}
    for token, _ in learned:
        if token not in vocab:
            vocab[token] = len(vocab)
    renumbered = Tokenizer(models.WordLevel(vocab=vocab, unk_token=cfg.unk_token))
    renumbered.normalizer = tokenizer.normalizer
    renumbered.pre_tokenizer = tokenizer.pre_tokenizer
    renumbered.decoder = tokenizer.decoder
    renumbered.add_special_tokens(specials)
    return renumbered


def _canonical_unigram(tokenizer: Tokenizer, cfg: TokenizerConfig) -> Tokenizer:
    """Make a trained Unigram model independent of HF's thread and hash-map order.

    Two run-to-run differences are removed: (1) the EM sums in parallel, so scores differ in the last
    digits (~1e-15): they are rounded to 1e-6; (2) characters the trainer must keep but did not select
    are appended with scores stepping down by 1e-4 in hash-set order: each such run of single characters
    is put in code point order, keeping its score sequence (the multiset of scores is unchanged).
    Remaining ties are ordered by piece.
    """
    model = json.loads(tokenizer.to_str())["model"]
    n_special = len(cfg.special_tokens)
    specials = [(piece, 0.0) for piece, _ in model["vocab"][:n_special]]
    learned = [(piece, round(score, 6)) for piece, score in model["vocab"][n_special:]]
    learned.sort(key=lambda ps: (-ps[1], ps[0]))
    # Runs of single characters whose scores step down by 0 or 1e-4: the trainer's appended characters.
    start = 0
    while start < len(learned):
        end = start + 1
        while (
            end < len(learned)
            and len(learned[start][0]) == 1
            and len(learned[end][0]) == 1
            and min(abs(learned[end - 1][1] - learned[end][1] - step) for step in (0.0, 1e-4)) < 1e-7
        ):
            end += 1
        if end - start >= 3:
            chars = sorted(piece for piece, _ in learned[start:end])
            learned[start:end] = [(char, score) for char, (_, score) in zip(chars, learned[start:end])]
        start = end
    canonical = Tokenizer(models.Unigram(specials + learned, unk_id=model["unk_id"], byte_fallback=False))
    canonical.normalizer = tokenizer.normalizer
    canonical.pre_tokenizer = tokenizer.pre_tokenizer
    canonical.decoder = tokenizer.decoder
    canonical.add_special_tokens(list(cfg.special_tokens))
    return canonical


class _Counted:
    """An iterator over texts that remembers how many it produced (HF trainers accept any iterator)."""

    def __init__(self, texts: Iterable[str]):
        self._texts = iter(texts)
        self.count = 0

    def __iter__(self) -> Iterator[str]:
        return self

    def __next__(self) -> str:
        text = next(self._texts)
        self.count += 1
        return text
