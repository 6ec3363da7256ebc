"""ARPA: write -> read round trip, the chunked writer's bytes, and pip's kenlm scores our ARPA files exactly
as we do."""

import gzip
import io

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from arcore.errors import InputError
from arcore.ngram.arpa import LN10, NO_PROB, default_words, read_arpa, write_arpa
from arcore.ngram.binary import load_binary, save_binary
from arcore.ngram.counts import count_ngrams
from arcore.ngram.index import NGramIndex, decode
from arcore.ngram.kneser_ney import estimate_kneser_ney
from arcore.ngram.additive import estimate_mle
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
        # the ARPA holds float32 values (lmplz's precision): per token, log10 within float32 rounding
        np.testing.assert_allclose(back.score(ids), model.score(ids), rtol=1e-6)
        for n in range(1, model.order + 1):  # every value reads back as exactly its float32
            want = np.maximum(np.asarray(model.logprob[n - 1]) / LN10, NO_PROB).astype(np.float32)
            np.testing.assert_array_equal(back.keys[n - 1], model.keys[n - 1])
            np.testing.assert_array_equal(np.maximum(back.logprob[n - 1] / LN10, NO_PROB).astype(np.float32), want)
    text = (tmp_path / "m.arpa").read_text()
    values = [line.split("\t")[0] for line in text.splitlines() if "\t" in line]
    shortest = [np.format_float_positional(np.float32(v), unique=True, trim="-") for v in values]
    assert all(float(a) == float(b) and len(a.lstrip("-").replace(".", "").strip("0")) <=
               len(b.lstrip("-").replace(".", "").strip("0")) for a, b in zip(values, shortest) if "e" not in a)
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


def whole_model_arpa(model, words) -> bytes:
    """The writer before it streamed: every order decoded and formatted at once (the reference)."""
    fmt = lambda v: pc.cast(pa.array(np.maximum(v / LN10, NO_PROB).astype(np.float32)), pa.string())  # noqa
    word_arr = pa.array(words, pa.string())
    buf = io.StringIO()
    buf.write("\\data\\\n")
    for n, m in enumerate(model.num_ngrams(), start=1):
        buf.write(f"ngram {n}={m}\n")
    for n in range(1, model.order + 1):
        buf.write(f"\n\\{n}-grams:\n")
        mat = decode(model.keys, model.vocab_size, n)
        columns = [fmt(model.logprob[n - 1])] + [pc.take(word_arr, pa.array(mat[:, j])) for j in range(n)]
        lines = pc.binary_join_element_wise(columns[0], pc.binary_join_element_wise(*columns[1:], " "), "\t")
        if n < model.order:
            is_context = np.bincount(model.keys[n] // model.vocab_size, minlength=len(model.keys[n - 1])) > 0
            with_bo = pc.binary_join_element_wise(lines, fmt(model.logbackoff[n - 1]), "\t")
            lines = pc.if_else(pa.array(is_context), with_bo, lines)
        buf.write("\n".join(lines.to_numpy(zero_copy_only=False).tolist()))
        buf.write("\n")
    buf.write("\n\\end\\\n")
    return buf.getvalue().encode("utf-8")


def test_chunked_writer_byte_identical_to_whole_model_writer(files, tmp_path):
    train, _ = files
    model, vocab = estimate_arpa_from_text(train, tmp_path / "m.arpa", 4, "kneser-ney",
                                           discount_fallback=(0.5, 1.0, 1.5))
    rng = np.random.default_rng(0)
    ids = np.concatenate([np.append(rng.integers(3, 60, rng.integers(1, 9)), 2) for _ in range(400)])
    idx = NGramIndex.from_counts(count_ngrams(ids, 3, 1, 2, vocab_size=64))  # ids 60..63 unseen
    mle = estimate_mle(idx)  # -inf backoffs, -99 probabilities, unseen words
    kn = estimate_kneser_ney(idx, discount_fallback=(0.5, 1.0, 1.5))
    for m, words in ((model, list(vocab.words)), (mle, default_words(mle)), (kn, default_words(kn))):
        expected = whole_model_arpa(m, words)
        mapped = load_binary(save_binary(m, tmp_path / f"{m.name}.bin"))
        for source, chunk in ((m, 1 << 17), (m, 3), (mapped, 7)):
            write_arpa(source, tmp_path / "c.arpa", words, chunk_rows=chunk)
            assert (tmp_path / "c.arpa").read_bytes() == expected, (m.name, chunk)
        write_arpa(mapped, tmp_path / "c.arpa.gz", words, chunk_rows=5)
        assert gzip.decompress((tmp_path / "c.arpa.gz").read_bytes()) == expected
        write_arpa(mapped, tmp_path / "c9.arpa.gz", words, compresslevel=9, chunk_rows=5)
        ours, old = (tmp_path / "c9.arpa.gz").read_bytes(), gzip.compress(expected, mtime=0)
        assert ours[:9] == old[:9] and ours[10:] == old[10:]  # the old bytes but the header's OS byte
