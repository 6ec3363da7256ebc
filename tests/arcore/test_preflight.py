"""Preflight: inputs that cannot make a run are refused before any stage computes, with one line that
names what is missing and the setting or input that fixes it; nothing that can work is refused."""

from __future__ import annotations

import os
import zlib
from pathlib import Path

import pytest

from arcore.config import PipelineConfig, load_config
from arcore.errors import ConfigError, InputError
from arcore.ingest import input_files
from arcore.preflight import SURVEY_BYTES, _needs, preflight, survey_inputs, vocab_upper_bound
from tests.conftest import write_corpus


def cfg_for(inputs, *sets: str) -> PipelineConfig:
    return load_config(None, [f"ingest.inputs={[str(i) for i in inputs]}", *sets])


def test_default_config_passes_reading_only_the_start_of_the_sample():
    cfg = PipelineConfig()
    assert preflight(cfg) == []
    survey = survey_inputs(cfg, input_files(cfg.ingest), _needs(cfg))
    # stopped as soon as every split had a document and enough tokens: a few KB of the 1.1 MB sample
    assert not survey.complete and all(survey.documents.values())
    assert sum(survey.bytes.values()) < 64 << 10


def test_three_words_and_a_single_document_are_refused(tmp_path):
    three = tmp_path / "three.txt"
    three.write_text("three words here\n")
    with pytest.raises(InputError, match=r"^the valid split would be empty: the inputs give 1 document\(s\) \(16 bytes\) "
                                         r"after dedup, 1 in train; .*ingest.valid_fraction=0.05\) or assign an input "
                                         r"to split 'valid'$"):
        preflight(cfg_for([three]))
    one = tmp_path / "one.txt"
    one.write_text(" ".join(f"w{i}" for i in range(5000)) + "\n")  # plenty of text, one document
    with pytest.raises(InputError, match=r"the valid split would be empty"):
        preflight(cfg_for([one]))


def test_too_few_tokens_for_batch_and_window(tmp_path):
    train = tmp_path / "train.txt"
    train.write_text("a b c d e f\n\ng h i j\n")
    valid = tmp_path / "valid.txt"
    valid.write_text("valid text that is long enough " * 10 + "\n")
    test = tmp_path / "test.txt"
    test.write_text("test text\n")
    inputs = [f"ingest.inputs=[{train}, {{path: {valid}, split: valid}}, {{path: {test}, split: test}}]"]
    with pytest.raises(InputError, match=r"^the train split gives at most 22 tokens \(2 document\(s\), 18 bytes\), "
                                         r"fewer than the 528 that rnn.batch_size=16 x \(rnn.bptt=32 \+ 1\) need"):
        preflight(load_config(None, inputs))
    assert preflight(load_config(None, [*inputs, "rnn.batch_size=1", "rnn.bptt=4"])) == []
    with pytest.raises(InputError, match=r"the valid split gives at most .* 2 x rnn.eval_batch_size=200 need"):
        preflight(load_config(None, [*inputs, "rnn.batch_size=1", "rnn.bptt=4", "rnn.eval_batch_size=200"]))
    assert preflight(load_config(None, [*inputs, "models=[ngram]", "ngram.models=[kneser-ney]"])) == []


def test_a_split_no_document_can_reach_is_refused_without_reading(tmp_path):
    corpus = write_corpus(tmp_path / "c.txt")
    with pytest.raises(ConfigError, match=r"the test split will be empty: ingest.test_fraction is 0 and no input "
                                          r"is assigned to split 'test', but evaluate \(evaluate.splits\) reads it"):
        preflight(cfg_for([corpus], "ingest.test_fraction=0"))
    assert preflight(cfg_for([corpus], "ingest.test_fraction=0", "evaluate.splits=[valid]")) == []


def test_unreachable_vocabulary_is_refused_with_the_bound(tmp_path):
    cfg = load_config(None, ["tokenizer.vocab_size=1000000"])  # the bundled sample
    with pytest.raises(ConfigError, match=r"^tokenizer.vocab_size=1000000 cannot be reached: the train split "
                                          r"\(\d+ document\(s\), \d+ bytes\) gives kind='bpe' at most (\d+) tokens"):
        preflight(cfg)
    assert preflight(load_config(None, ["tokenizer.vocab_size=12000"])) == []  # reachable: checked, passes


def test_vocab_upper_bound_holds_for_every_kind():
    """The bound is never below what the trainer actually learns (min_frequency=1, the most it can)."""
    from arcore.tokenize.config import TokenizerConfig
    from arcore.tokenize.trainers import train_tokenizer

    texts = [f"the {w} sat on the mat with {w}s and a{w}" for w in ("cat", "dog", "hen", "ox", "émeu")]
    for kind in ("bpe", "wordpiece", "unigram", "char", "word"):
        cfg = TokenizerConfig(kind=kind, vocab_size=5000, min_frequency=1)
        bound, _ = vocab_upper_bound(cfg, texts)
        learned = train_tokenizer(cfg, texts).get_vocab_size()
        assert learned <= bound < 5000, (kind, learned, bound)


def test_vocab_size_is_bounded_in_the_schema():
    with pytest.raises(ConfigError, match=r"tokenizer.vocab_size = 4294967296: Input should be less than or equal "
                                          r"to 16777216"):
        load_config(None, ["tokenizer.vocab_size=4294967296"])


def test_special_files_and_nothing_textual(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    write_corpus(src / "a.txt")
    os.mkfifo(src / "pipe")
    with pytest.raises(InputError, match=r"src/pipe: not a regular file \(a named pipe\).*ingest.on_error=skip"):
        preflight(cfg_for([src]))
    assert preflight(cfg_for([src], "ingest.on_error=skip")) == [
        f"{src / 'pipe'}: not a regular file (a named pipe); ingest reads regular files only: skipped "
        "(ingest.on_error=skip)"]
    images = tmp_path / "images"
    images.mkdir()
    (images / "a.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + zlib.compress(os.urandom(2000)))
    with pytest.raises(InputError, match=r"^the inputs yield no documents: 1 file\(s\), 1 skipped: .*a.png: binary"):
        preflight(cfg_for([images]))


def test_missing_input(tmp_path):
    with pytest.raises(InputError, match=r"input not found: '.*nope.txt'"):
        preflight(cfg_for([tmp_path / "nope.txt"]))


def test_survey_budget_bounds_what_is_read(tmp_path):
    """A large corpus is read only up to the budget; what was not proved is left to the stages."""
    big = tmp_path / "big.txt"
    big.write_text("".join(f"line {i} of text\n" for i in range(200_000)))  # one paragraph: 1 document
    cfg = cfg_for([big], "ingest.unit=line", "ingest.valid_fraction=0.000001", "ingest.test_fraction=0.000001")
    survey = survey_inputs(cfg, input_files(cfg.ingest), _needs(cfg), budget=64 << 10)
    assert not survey.complete and sum(survey.bytes.values()) < (64 << 10) + 100
    assert SURVEY_BYTES <= 8 << 20
