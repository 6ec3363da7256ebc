"""Whitespace-tokenized text to token ids, the way KenLM's lmplz and query read it.

Input: a text file, one sentence per line, words separated by whitespace; blank lines are dropped.
Output: a ``WordVocabulary`` (id 0 ``<unk>``, 1 ``<s>``, 2 ``</s>``, then training words in order of first
appearance, as lmplz numbers them) and flat id arrays in the shard layout (every sentence followed by
``</s>``). Words absent from the vocabulary map to ``<unk>`` and are counted as OOVs, as in query.

Example: ``"a b\\n\\nb\\n"`` -> words ``[<unk>, <s>, </s>, a, b]``, ids ``[3, 4, 2, 4, 2]``.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from arcore.errors import InputError
from arcore.ngram.adjust_counts import adjust_counts
from arcore.ngram.arpa import read_arpa, write_arpa
from arcore.ngram.binary import load_binary
from arcore.ngram.corpus_count import corpus_count
from arcore.ngram.diskarray import NpyAppender, NpyFile, release_memory, working_budget
from arcore.ngram.backoff import BackoffModel
from arcore.ngram.query import QueryResult, query

UNK, BOS, EOS = "<unk>", "<s>", "</s>"


# lmplz's word separators: ASCII whitespace only (a no-break space is part of a word)
_SPACES = re.compile(r"[ \t\n\v\f\r]+")


def split_words(line: str) -> list[str]:
    """``"  a\tb  c "`` -> ``["a", "b", "c"]``: the words of a line, split on ASCII whitespace as lmplz."""
    return [w for w in _SPACES.split(line) if w]


def read_sentences(path: Path) -> list[list[str]]:
    """Non-blank lines of ``path`` split on ASCII whitespace (``split_words``)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"input file {path} does not exist; pass an existing text file") from None
    except UnicodeDecodeError as exc:
        raise InputError(f"input file {path} is not UTF-8 ({exc.reason} at byte {exc.start})") from None
    return [words for words in map(split_words, text.split("\n")) if words]


@dataclass(frozen=True, eq=False)
class WordVocabulary:
    """``words[id]`` and the inverse map. Built from training text, ids 0, 1, 2 are ``<unk> <s> </s>``."""

    words: tuple[str, ...]
    index: dict

    @classmethod
    def from_sentences(cls, sentences: list[list[str]]) -> "WordVocabulary":
        index = {UNK: 0, BOS: 1, EOS: 2}
        for sentence in sentences:
            for word in sentence:
                if word not in index:
                    index[word] = len(index)
                elif index[word] < 3:
                    raise InputError(f"training text contains the reserved token {word}; replace it (for "
                                     "example <unk> by __unk__), as lmplz requires")
        return cls(tuple(index), index)

    @classmethod
    def from_words(cls, words: list[str]) -> "WordVocabulary":
        """An ARPA file's vocabulary (must contain ``<s>`` and ``</s>``)."""
        return cls(tuple(words), {w: i for i, w in enumerate(words)})

    @property
    def unk_id(self) -> int | None:
        return self.index.get(UNK)

    @property
    def bos_id(self) -> int:
        return self.index[BOS]

    @property
    def eos_id(self) -> int:
        return self.index[EOS]

    def __len__(self) -> int:
        return len(self.words)

    def encode(self, sentences: list[list[str]]) -> tuple[np.ndarray, np.ndarray]:
        """Flat ids (each sentence followed by ``</s>``) and the OOV mask (words that map to ``<unk>``).

        Unknown words get ``unk_id`` (-1 when the vocabulary has no ``<unk>``).
        """
        unk = self.unk_id if self.unk_id is not None else -1
        get = self.index.get
        flat = [tok for sentence in sentences for tok in (*sentence, EOS)]
        ids = np.fromiter((get(w, unk) for w in flat), dtype=np.int64, count=len(flat))
        return ids, ids == unk


def encode_training_text(path: Path, ids_path: Path, block_bytes: int = 16 << 20) -> tuple["WordVocabulary", int]:
    """``encode_text_ids`` with the vocabulary as a ``WordVocabulary``."""
    words, lines = encode_text_ids(path, ids_path, block_bytes)
    vocab = words.to_pylist()
    return WordVocabulary(tuple(vocab), {w: i for i, w in enumerate(vocab)}), lines


def encode_text_ids(path: Path, ids_path: Path, block_bytes: int = 16 << 20) -> tuple[pa.Array, int]:
    """One streamed pass over a training text: the vocabulary (lmplz's numbering, as ``from_sentences``:
    ``<unk> <s> </s>``, then words by first appearance) and the flat ids (each line's words, then ``</s>``;
    blank lines dropped) written to ``ids_path`` as uint32 ``.npy``. Memory: the vocabulary and one block.

    Vectorized with pyarrow compute: per block of lines, ``utf8_split_whitespace`` and
    ``dictionary_encode`` (first-appearance order), then the block's new words are appended to the
    vocabulary and its words mapped to global ids with ``index_in``; no Python loop per word.
    """
    words = pa.array([UNK, BOS, EOS], pa.string())
    lines = 0
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        raise InputError(f"input file {path} does not exist; pass an existing text file") from None
    with f, NpyAppender(ids_path, np.uint32) as out:
        rest = b""
        offset = 0
        while True:
            raw = f.read(block_bytes)
            data = rest + raw
            cut = data.rfind(b"\n") + 1 if raw else len(data)
            block, rest = data[:cut], data[cut:]
            if not block:
                if not raw:
                    break
                continue
            try:
                text = block.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise InputError(f"input file {path} is not UTF-8 ({exc.reason} at byte {offset + exc.start})") from None
            offset += len(block)
            line_arr = pc.split_pattern(pa.array([text], pa.string()), "\n").flatten()
            tokens = pc.ascii_split_whitespace(line_arr)
            split = tokens.flatten()
            keep = pc.not_equal(pc.binary_length(split), 0)  # runs of spaces leave empty strings
            parent = pc.list_parent_indices(tokens).filter(keep).to_numpy(zero_copy_only=False)
            lengths = np.bincount(parent, minlength=len(line_arr))
            lengths = lengths[lengths > 0]
            lines += lengths.size
            flat = pc.dictionary_encode(split.filter(keep))
            local = flat.dictionary
            known = pc.index_in(local, value_set=words).to_numpy(zero_copy_only=False)
            if np.any(known[~np.isnan(known)] < 3):
                bad = local.filter(pc.less(pc.index_in(local, value_set=words).fill_null(3), 3))[0].as_py()
                raise InputError(f"training text contains the reserved token {bad}; replace it (for "
                                 "example <unk> by __unk__), as lmplz requires")
            new = np.isnan(known)
            ids_of_local = np.where(new, 0, np.nan_to_num(known)).astype(np.int64)
            ids_of_local[new] = len(words) + np.arange(int(new.sum()))
            words = pa.concat_arrays([words, local.filter(pa.array(new))])
            word_ids = ids_of_local[flat.indices.to_numpy(zero_copy_only=False)]
            ids = np.full(word_ids.size + lengths.size, 2, dtype=np.uint32)
            ends = np.cumsum(lengths + 1) - 1  # position of each line's </s>
            is_word = np.ones(ids.size, dtype=bool)
            is_word[ends] = False
            ids[is_word] = word_ids
            out.append(ids)
            if not raw:
                break
    if not lines:
        raise InputError(f"training file {path} has no non-blank lines")
    release_memory()  # the blocks' buffers
    return words, lines


def documents_of(ids: NpyFile, eos_id: int, piece: int):
    """A stream (for ``corpus_count``) of ``ids`` in pieces of whole documents of about ``piece`` ids."""
    def stream():
        carry = np.zeros(0, dtype=ids.dtype)
        for _, chunk in ids.chunks(piece):
            chunk = np.concatenate([carry, chunk])
            ends = np.flatnonzero(chunk == eos_id)
            cut = int(ends[-1]) + 1 if ends.size else 0
            if cut:
                yield chunk[:cut]
            carry = chunk[cut:]
        if carry.size:
            yield carry
    return stream


def estimate_arpa_from_text(train: Path, arpa: Path, order: int, smoothing: str, *, k: float = 0.5,
                            heldout: Path | None = None, discount_fallback: tuple[float, float, float] | None = None,
                            memory_budget_mb: int = 1024) -> tuple[BackoffModel, "WordVocabulary"]:
    """``lmplz``'s job on a whitespace text file, out of core: the text streamed to ids on disk
    (``encode_text_ids``), counted and estimated by the passes (``corpus_count``, ``adjust_counts``, the
    streamed estimator of ``smoothing``) within ``memory_budget_mb`` for the whole process, the binary model
    written beside the ARPA file (``<arpa>.binary/``) and the ARPA streamed from it.

    ``interpolated`` fits its weights on ``heldout`` when given; otherwise on the last tenth of the
    training sentences, counted without them, and then re-estimates on all sentences with those weights.
    Returns the model (memory-mapped from ``<arpa>.binary``) and its vocabulary.
    """
    from arcore.ngram.fit import SMOOTHINGS, NGramConfig, _estimate_binary

    if smoothing not in SMOOTHINGS:
        raise InputError(f"unknown smoothing {smoothing!r}; choose one of {', '.join(SMOOTHINGS)}")
    if smoothing == "add-k" and not 0 < k <= 10:
        raise InputError(f"add-k needs 0 < k <= 10, got {k}; use mle for k = 0")
    arpa = Path(arpa)
    work = Path(tempfile.mkdtemp(prefix=".arpipe-estimate-", dir=arpa.parent))
    binary = Path(str(arpa) + ".binary")
    try:
        # the words stay one Arrow array (~12 bytes a word) during the passes, not Python strings (~150)
        words, lines = encode_text_ids(train, work / "ids.npy")
        budget = working_budget(memory_budget_mb << 20)
        cfg = NGramConfig(order=order, models=[smoothing], add_k=k if smoothing == "add-k" else 0.5,
                          discount_fallback=discount_fallback)
        ids = NpyFile(work / "ids.npy")
        piece = max(1 << 16, budget // 64)

        def tables_of(stream, name: str):
            tables = corpus_count(stream, order, len(words), 1, 2, work / name, memory_budget_bytes=budget)
            adjust_counts(tables, budget)
            return tables

        valid_ids, weights = None, None
        if smoothing == "interpolated":
            if heldout is not None:
                index = {w: i for i, w in enumerate(words.to_pylist())}
                valid_ids = WordVocabulary(tuple(index), index).encode(read_sentences(heldout))[0]
            elif lines < 2:
                raise InputError("interpolated smoothing needs at least 2 training sentences or --heldout FILE")
            else:  # weights from the last tenth of the sentences, counted without them
                cut = _offset_after_line(ids, lines - max(1, lines // 10), piece)
                fit_tables = tables_of(lambda: [ids.read(0, cut)], "fit-tables")
                fitted = _estimate_binary(smoothing, fit_tables, cfg, ids.read(cut), 0, work / "fit", budget)
                weights = fitted.info["weights"]
                del fitted
        tables = tables_of(documents_of(ids, 2, piece), "tables")
        model = _estimate_binary(smoothing, tables, cfg, valid_ids, 0, work, budget, weights=weights)
        del model
        shutil.rmtree(binary, ignore_errors=True)
        (work / f"{smoothing}.binary").rename(binary)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    model = load_binary(binary)
    vocab_list = words.to_pylist()
    del words
    write_arpa(model, arpa, vocab_list)
    return model, WordVocabulary(tuple(vocab_list), {w: i for i, w in enumerate(vocab_list)})


def _offset_after_line(ids: NpyFile, line: int, piece: int) -> int:
    """The offset just after the ``line``-th ``</s>`` (1-based) of a long id file, read in pieces."""
    seen = 0
    for lo, chunk in ids.chunks(piece):
        ends = np.flatnonzero(chunk == 2)
        if seen + ends.size >= line:
            return lo + int(ends[line - seen - 1]) + 1
        seen += ends.size
    return len(ids)


def score_text_with_arpa(arpa: Path, text: Path) -> QueryResult:
    """``query``'s job: score every sentence of ``text`` with the ARPA model; returns a ``QueryResult``."""
    model, words = read_arpa(arpa)
    vocab = WordVocabulary.from_words(words)
    ids, oov = vocab.encode(read_sentences(text))
    if vocab.unk_id is None and oov.any():
        raise InputError(f"{arpa} has no <unk> unigram, so OOV words cannot be scored; re-estimate it")
    return query(model, ids, oov)
