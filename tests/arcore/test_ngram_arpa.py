"""ARPA: write -> read round trip, and pip's kenlm scores our ARPA files exactly as we do."""

import numpy as np
import pytest

from arcore.errors import InputError
from arcore.ngram.arpa import read_arpa, write_arpa
from arcore.ngram.text import WordVocabulary, estimate_arpa_from_text

kenlm = pytest.importorskip("kenlm")

SENTENCES = """the cat sat on the mat
the dog sat on the log
a cat and a dog sat
the cat saw the dog
on the mat the cat sat
a dog saw a cat on the log
the log and the mat
""" * 3 + "the dog ran\na cat ran on the mat\n"
TEST = "the cat sat on the log\na dog ran\nthe zebra sat\n"


@pytest.fixture()
def files(tmp_path):
    train, test = tmp_path / "train.txt", tmp_path / "test.txt"
    train.write_text(SENTENCES)
    test.write_text(TEST)
    return train, test


@pytest.mark.parametrize("smoothing", ["kneser-ney", "laplace", "add-k", "katz", "interpolated"])
def test_kenlm_scores_our_arpa_like_we_do(files, tmp_path, smoothing):
    train, test = files
    arpa = tmp_path / f"{smoothing}.arpa"
    model, vocab = estimate_arpa_from_text(train, arpa, 3, smoothing, discount_fallback=(0.5, 1.0, 1.5))
    sentences = [line.split() for line in TEST.splitlines()]
    ids, oov = vocab.encode(sentences)
    ours = model.score(ids) / np.log(10)
    ref = kenlm.Model(str(arpa))
    theirs = np.array([s[0] for line in TEST.splitlines() for s in ref.full_scores(line)])
    np.testing.assert_allclose(ours, theirs, atol=2e-6)  # kenlm stores float32
    assert oov.sum() == 1  # zebra


def test_round_trip_and_gzip(files, tmp_path):
    train, _ = files
    model, vocab = estimate_arpa_from_text(train, tmp_path / "m.arpa", 4, "kneser-ney",
                                           discount_fallback=(0.5, 1.0, 1.5))
    write_arpa(model, tmp_path / "m.arpa.gz", vocab.words)
    for path in (tmp_path / "m.arpa", tmp_path / "m.arpa.gz"):
        back, words = read_arpa(path)
        assert words == list(vocab.words) and back.num_ngrams() == model.num_ngrams()
        ids, _ = vocab.encode([line.split() for line in SENTENCES.splitlines()])
        np.testing.assert_allclose(back.score(ids), model.score(ids), rtol=1e-8)
    text = (tmp_path / "m.arpa").read_text()
    assert text.startswith("\\data\\\nngram 1=") and "-99\t<s>\t" in text and text.rstrip().endswith("\\end\\")


def test_unknown_word_in_ngram_is_refused(tmp_path):
    bad = tmp_path / "bad.arpa"
    bad.write_text("\\data\\\nngram 1=3\nngram 2=1\n\n\\1-grams:\n-1\t<unk>\n-99\t<s>\t0\n-1\t</s>\n\n"
                   "\\2-grams:\n-1\t<s> zebra\n\n\\end\\\n")
    with pytest.raises(InputError, match="missing from the unigrams"):
        read_arpa(bad)


def test_reserved_words_refused_in_training(tmp_path):
    train = tmp_path / "t.txt"
    train.write_text("a <unk> b\n")
    with pytest.raises(InputError, match="__unk__"):
        estimate_arpa_from_text(train, tmp_path / "x.arpa", 2, "laplace")
    assert WordVocabulary.from_sentences([["a"]]).words == ("<unk>", "<s>", "</s>", "a")
