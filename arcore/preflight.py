"""Preflight: what the configured stages need from the inputs, checked before any stage computes.

In: a validated ``PipelineConfig``. Out: warnings (lines to show) or an ``InputError``/``ConfigError``
whose one line says what is missing and which setting or input fixes it. Runs in the CLI before the
Prefect API starts, so an input that cannot make a run fails in seconds, not after minutes of ingest,
tokenizer and shards (issue 17: a nonexistent path surfaced 48 s in, a three-word corpus in the n-gram
stage, ``tokenizer.vocab_size=1000000`` ran a quarter of an hour).

What it adds over the stages' own checks (which stay, for served and deployed runs): it reads the
inputs through ingest's own code (``arcore.ingest.build``: same readers, normalization, dedup and hash
split, so the counts are the ones ingest will write) but only as far as it must, and writes nothing:

- every input exists; inputs that are not regular files (named pipes, sockets, devices) are refused
  under ``on_error=fail`` by their ``stat``, never opened;
- a split some stage needs is not empty: ``train``, ``valid`` when a stage reads it (interpolation's
  EM weights, neural validation, promotion by valid bits per byte) and each of ``evaluate.splits``; a
  split with fraction 0 and no input assigned to it is refused without reading anything;
- enough tokens for each neural stage: ``batch_size * (window + 1)`` train tokens and
  ``2 * eval_batch_size`` valid tokens, against an upper bound on the tokens a split can give (UTF-8
  bytes plus two per document, for any tokenizer kind: every kind's tokens cover at least one byte,
  except ``</s>`` and Unigram's prepended ``▁``);
- a vocabulary the tokenizer can reach (``vocab_upper_bound``), checked when ``tokenizer.vocab_size`` is
  over ``VOCAB_CHECK_ABOVE``.

The survey stops as soon as every need is met (on the bundled sample: a few dozen paragraphs), and
after ``SURVEY_BYTES`` of documents whatever it has seen: it refuses only what it has proved, so a
corpus larger than that is left to the stages.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from arcore.config import PipelineConfig
from arcore.errors import ConfigError, InputError
from arcore.ingest.build import _ingest_file, input_files
from arcore.ingest.dedup import DigestSet
from arcore.ingest.readers import not_regular_message, special_kind
from arcore.ingest.schema import SPLITS

SURVEY_BYTES = 8 << 20  # documents read at most; ~2 s of ingest on 2 cores
VOCAB_CHECK_ABOVE = 8192  # vocabulary sizes above this are checked against the train split's words
VOCAB_BOUND_BYTES = 64 << 20  # train text at most held for that check (the survey's budget bounds it first)


@dataclass
class Survey:
    """Documents and UTF-8 bytes per split of what was read; ``complete`` once every input was read."""

    documents: dict = field(default_factory=lambda: {s: 0 for s in SPLITS})
    bytes: dict = field(default_factory=lambda: {s: 0 for s in SPLITS})
    complete: bool = False
    files: int = 0
    files_skipped: list = field(default_factory=list)  # (name, reason) of files ingest would leave out
    train_texts: Optional[list] = None  # kept only for the vocabulary check

    def token_bound(self, split: str) -> int:
        """Most tokens ``split`` can give any tokenizer kind, ``</s>`` included."""
        return self.bytes[split] + 2 * self.documents[split]

    def describe(self, split: str) -> str:
        return f"{self.documents[split]} document(s), {self.bytes[split]} bytes"


class _Enough(Exception):
    """Raised by the survey writer once every need is met (or the byte budget is spent)."""


class _SurveyWriter:
    """Stands in for ingest's ``DocumentsWriter``: counts what would be written, keeps nothing (but the
    train texts, when the vocabulary check needs them), and stops the survey when told enough."""

    def __init__(self, survey: Survey, enough, budget: int):
        self.survey, self.enough, self.budget, self.total = survey, enough, budget, 0

    def add(self, doc_id: str, split: str, text: str, source: str, nbytes: int) -> None:
        self.survey.documents[split] += 1
        self.survey.bytes[split] += nbytes
        if split == "train" and self.survey.train_texts is not None:
            self.survey.train_texts.append(text)
        self.total += nbytes
        if self.total >= self.budget or self.enough(self.survey):
            raise _Enough


def preflight(cfg: PipelineConfig) -> list[str]:
    """Check ``cfg`` against its inputs; returns warnings, raises the first refusal (one line)."""
    warnings: list[str] = []
    files = input_files(cfg.ingest)  # InputError for an input that matches nothing
    for f in files:
        try:
            kind = special_kind(f.path)
        except OSError:
            continue  # the stage reports it under its on_error policy, with the reason
        if kind is None:
            continue
        if cfg.ingest.on_error == "fail":
            raise InputError(f"{not_regular_message(f.name, kind)}; remove it from ingest.inputs or set "
                             "ingest.on_error=skip to leave such files out")
        warnings.append(f"{not_regular_message(f.name, kind)}: skipped (ingest.on_error=skip)")
    needs = _needs(cfg)
    _check_assignable(cfg, needs)
    check_vocab = cfg.tokenizer.vocab_size > VOCAB_CHECK_ABOVE
    survey = survey_inputs(cfg, files, needs, keep_train=check_vocab)
    _check_splits(cfg, survey, needs)
    if check_vocab and survey.complete:
        bound, how = vocab_upper_bound(cfg.tokenizer, survey.train_texts)
        if cfg.tokenizer.vocab_size > bound:
            raise ConfigError(
                f"tokenizer.vocab_size={cfg.tokenizer.vocab_size} cannot be reached: the train split "
                f"({survey.describe('train')}) gives kind={cfg.tokenizer.kind!r} at most {bound} tokens ({how}); "
                f"lower tokenizer.vocab_size to {bound} or less, or add text")
    return warnings


@dataclass(frozen=True)
class _Needs:
    splits: tuple[str, ...]  # splits that must hold at least one document
    tokens: dict  # split -> (tokens needed, the settings that set it)


def _needs(cfg: PipelineConfig) -> _Needs:
    splits = ["train"]
    neural = [m for m in cfg.models if m in ("rnn", "transformer")]
    if (neural or cfg.registry.enabled or "valid" in cfg.evaluate.splits
            or ("ngram" in cfg.models and "interpolated" in cfg.ngram.models)):
        splits.append("valid")  # validation, promotion by valid bits per byte, interpolation's EM weights
    splits += [s for s in cfg.evaluate.splits if s not in splits]
    tokens: dict = {}
    for section in neural:
        train = getattr(cfg, section)
        window = "bptt" if section == "rnn" else "context"
        need = train.batch_size * (train.bptt + 1)
        if need > tokens.get("train", (0,))[0]:
            tokens["train"] = (need, f"{section}.batch_size={train.batch_size} x ({section}.{window}={train.bptt} + 1)")
        need = 2 * train.eval_batch_size
        if need > tokens.get("valid", (0,))[0]:
            tokens["valid"] = (need, f"2 x {section}.eval_batch_size={train.eval_batch_size}")
    return _Needs(tuple(splits), tokens)


def _check_assignable(cfg: PipelineConfig, needs: _Needs) -> None:
    """A needed split that no document can reach: refused from the config alone."""
    fractions = {"valid": cfg.ingest.valid_fraction, "test": cfg.ingest.test_fraction}
    assigned = {spec.split for spec in cfg.ingest.input_specs if spec.split}
    for split in needs.splits:
        if split in fractions and fractions[split] == 0 and split not in assigned:
            raise ConfigError(
                f"the {split} split will be empty: ingest.{split}_fraction is 0 and no input is assigned to "
                f"split {split!r}, but {_reader(split)} reads it; set ingest.{split}_fraction or add an input "
                f"with split = {split!r}")


def _reader(split: str) -> str:
    return {"test": "evaluate (evaluate.splits)", "train": "every stage"}.get(
        split, "a configured stage (validation, evaluate.splits or promotion)")


def survey_inputs(cfg: PipelineConfig, files, needs: _Needs, keep_train: bool = False,
                  budget: int = SURVEY_BYTES) -> Survey:
    """Read the inputs as ingest does, writing nothing, until ``needs`` are met or ``budget`` is read."""
    survey = Survey(train_texts=[] if keep_train else None)

    def enough(s: Survey) -> bool:
        if keep_train:
            return False  # the vocabulary check wants the whole train split
        return all(s.documents[split] for split in needs.splits) and all(
            s.token_bound(split) >= need for split, (need, _) in needs.tokens.items())

    writer = _SurveyWriter(survey, enough, min(budget, VOCAB_BOUND_BYTES) if keep_train else budget)
    seen = DigestSet()
    try:
        for f in files:
            survey.files += 1
            part = _ingest_file(f, cfg.ingest, seen, writer)
            if part.skipped is not None:
                survey.files_skipped.append((f.name, part.skipped))
            seen.update(part.digests)
    except _Enough:
        return survey
    survey.complete = True
    return survey


def _check_splits(cfg: PipelineConfig, survey: Survey, needs: _Needs) -> None:
    if not survey.complete:
        return  # only what was proved is refused; the stages check the rest
    if sum(survey.documents.values()) == 0:
        why = "; ".join(reason if reason.startswith(name) else f"{name}: {reason}"
                        for name, reason in survey.files_skipped[:3])
        more = f" (+{len(survey.files_skipped) - 3} more)" if len(survey.files_skipped) > 3 else ""
        raise InputError(f"the inputs yield no documents: {survey.files} file(s), {len(survey.files_skipped)} "
                         f"skipped{': ' + why + more if why else ', the rest empty or duplicates'}; "
                         "point ingest.inputs at text")
    docs, size = sum(survey.documents.values()), sum(survey.bytes.values())
    total = f"the inputs give {docs} document(s) ({size} bytes) after dedup, {survey.documents['train']} in train"
    for split in needs.splits:
        if survey.documents[split] == 0:
            fix = ("add text or another input" if split == "train" else
                   f"add documents (each goes to {split} with probability ingest.{split}_fraction="
                   f"{getattr(cfg.ingest, f'{split}_fraction')}) or assign an input to split {split!r}")
            raise InputError(f"the {split} split would be empty: {total}; {_reader(split)} reads it; {fix}")
    for split, (need, setting) in needs.tokens.items():
        bound = survey.token_bound(split)
        if bound < need:
            raise InputError(
                f"the {split} split gives at most {bound} tokens ({survey.describe(split)}), fewer than the "
                f"{need} that {setting} need; lower those settings or add text")


def vocab_upper_bound(cfg, texts: list[str]) -> tuple[int, str]:
    """Most tokens a tokenizer of ``cfg.kind`` can learn from ``texts``, and how that was counted.

    Each merge of BPE and WordPiece joins a pair that occurs inside some distinct pre-tokenized word and
    shortens that word by one symbol, so the merges are at most sum(len(w) - 1) over distinct words; the
    alphabet is the 256 bytes (byte-level BPE) or the characters seen (with their ``##`` forms, WordPiece).
    Unigram keeps substrings of words; char and word kinds keep distinct characters or words. Four
    special tokens come on top. An upper bound: ``min_frequency`` and the trainers' pruning give fewer.
    """
    from arcore.tokenize.config import BYTE_ALPHABET_SIZE, SPECIAL_ROLES
    from arcore.tokenize.trainers import empty_tokenizer

    tokenizer, _ = empty_tokenizer(cfg)
    words: set[str] = set()
    chars: set[str] = set()
    for text in texts:
        if tokenizer.normalizer is not None:
            text = tokenizer.normalizer.normalize_str(text)
        if cfg.kind == "char":
            chars.update(text)
            continue
        words.update(w for w, _ in tokenizer.pre_tokenizer.pre_tokenize_str(text))
    specials = len(SPECIAL_ROLES)
    if cfg.kind == "char":
        return specials + len(chars), f"{len(chars)} distinct characters"
    if cfg.kind == "word":
        return specials + len(words), f"{len(words)} distinct words"
    merges = sum(len(w) - 1 for w in words)
    if cfg.kind == "bpe":
        return specials + BYTE_ALPHABET_SIZE + merges, f"{len(words)} distinct words allow {merges} merges"
    letters = {c for w in words for c in w}
    if cfg.kind == "wordpiece":
        return specials + 2 * len(letters) + merges, f"{len(words)} distinct words allow {merges} merges"
    substrings = sum(len(w) * (len(w) + 1) // 2 for w in words)
    return specials + substrings, f"{len(words)} distinct words hold at most {substrings} substrings"
