"""Evaluation metrics: hand-worked bigram numbers, the uniform model's perplexity, the bits-per-byte formula,
the comparison table and the bar chart. Toy models implement ``arcore.lm.LanguageModel`` here.

Token ids: 0 = ``<s>``, 1 = ``</s>``, 2 = ``a``, 3 = ``<unk>``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from arcore.errors import InputError
from arcore.evaluate import (TABLE_COLUMNS, Evaluation, TextCounts, compare_models, count_text,
                             document_chunks, evaluate_model, plot_bits_per_byte)
from arcore.lm import LanguageModel

BOS, EOS, A, UNK = 0, 1, 2, 3
LN2 = math.log(2)


class UniformModel:
    """Every token equally likely in every context."""

    def __init__(self, vocab_size):
        self.vocab_size, self.bos_id, self.eos_id = vocab_size, BOS, EOS

    def initial_state(self, batch_size):
        return np.zeros(batch_size)

    def next_logprobs(self, state):
        return np.full((len(state), self.vocab_size), -math.log(self.vocab_size))

    def advance(self, state, tokens):
        return state

    def select(self, state, rows):
        return state[rows]

    def score(self, ids):
        return np.full(len(ids), -math.log(self.vocab_size))


class BigramTable:
    """P(x_t | x_{t-1}) from a fixed table; the context resets to ``<s>`` after every ``</s>``."""

    def __init__(self, probs):
        with np.errstate(divide="ignore"):
            self.table = np.log(np.asarray(probs, dtype=np.float64))
        self.vocab_size, self.bos_id, self.eos_id = len(self.table), BOS, EOS
        self.calls = []

    def initial_state(self, batch_size):
        return np.full(batch_size, BOS)

    def next_logprobs(self, state):
        return self.table[state]

    def advance(self, state, tokens):
        return np.asarray(tokens)

    def select(self, state, rows):
        return state[rows]

    def score(self, ids):
        self.calls.append(len(ids))
        prev = np.concatenate([[BOS], ids[:-1]])
        prev[1:][ids[:-1] == EOS] = BOS
        return self.table[prev, ids]


# Powers of two so the hand-worked figures come out in whole bits.
#        <s>  </s>   a    <unk>
BIGRAM = [[0, 1 / 4, 1 / 2, 1 / 4],   # after <s>
          [0, 1 / 2, 1 / 4, 1 / 4],   # after </s> (never used: the context resets to <s>)
          [0, 1 / 2, 1 / 4, 1 / 4],   # after a
          [0, 1 / 2, 1 / 4, 1 / 4]]   # after <unk>

# Two documents, character-tokenized, "€" out of vocabulary: "a€" -> [a, <unk>, </s>], "a" -> [a, </s>].
TEXTS = ["a€", "a"]
IDS = np.array([A, UNK, EOS, A, EOS])


def test_toy_models_follow_the_protocol():
    assert isinstance(UniformModel(3), LanguageModel) and isinstance(BigramTable(BIGRAM), LanguageModel)


def test_count_text_counts_utf8_bytes_plus_one_per_document():
    assert count_text(["a b", "c"]) == TextCounts(source_bytes=6, words=3, documents=2)
    assert count_text(TEXTS) == TextCounts(source_bytes=(1 + 3 + 1) + (1 + 1), words=2, documents=2)
    assert count_text(["  two\twords\n", ""]) == TextCounts(source_bytes=13 + 1, words=2, documents=2)


def test_hand_worked_bigram_figures():
    """log2 P: doc 1 = log2(1/2 * 1/4 * 1/2) = -4 bits, doc 2 = log2(1/2 * 1/2) = -2 bits: 6 bits in all.

    5 tokens -> 1.2 bits per token, perplexity 2^1.2. Words: 1 + 1, plus 2 end-of-sentences -> 4,
    perplexity per word 2^(6/4). Bytes: "a€" 4 + 1, "a" 1 + 1 -> 7, so 6/7 bits per byte.
    OOV: 1 <unk> of 5 targets; without it 4 bits over 4 tokens -> perplexity 2.
    """
    result = evaluate_model(BigramTable(BIGRAM), IDS, count_text(TEXTS), unk_id=UNK)
    assert result.total_nll == pytest.approx(6 * LN2)
    assert result.nll_per_token == pytest.approx(1.2 * LN2)
    assert result.perplexity_per_token == pytest.approx(2 ** 1.2)
    assert result.perplexity_per_word == pytest.approx(2 ** 1.5)
    assert result.bits_per_byte == pytest.approx(6 / 7)
    assert result.oov_rate == pytest.approx(1 / 5) and result.oov_tokens == 1
    assert result.perplexity_per_token_excl_oov == pytest.approx(2.0)
    assert (result.tokens, result.words, result.documents, result.source_bytes) == (5, 2, 2, 7)
    assert result.zero_probability_tokens == 0


def test_uniform_models_perplexity_is_the_vocabulary_size():
    rng = np.random.default_rng(0)
    for vocab in (2, 7, 1000):
        ids = rng.integers(2, vocab, size=300) if vocab > 2 else np.full(300, EOS)
        ids[rng.random(300) < 0.1] = EOS
        ids[-1] = EOS
        documents = int(np.sum(ids == EOS))
        counts = TextCounts(source_bytes=1234, words=500, documents=documents)
        result = evaluate_model(UniformModel(vocab), ids, counts, unk_id=UNK)
        assert result.perplexity_per_token == pytest.approx(vocab)
        assert result.perplexity_per_token_excl_oov == pytest.approx(vocab)
        # bits per byte: tokens * log2(V) bits spread over the source bytes
        assert result.bits_per_byte == pytest.approx(len(ids) * math.log2(vocab) / 1234)
        assert result.perplexity_per_word == pytest.approx(vocab ** (len(ids) / (500 + documents)))


def test_chunked_scoring_matches_whole_and_reports_progress():
    ids = np.tile(IDS, 50)
    counts = count_text(TEXTS * 50)
    whole = evaluate_model(BigramTable(BIGRAM), ids, counts, unk_id=UNK)
    model, seen = BigramTable(BIGRAM), []
    chunked = evaluate_model(model, ids, counts, unk_id=UNK, chunk_tokens=7,
                             progress=lambda done, total: seen.append((done, total)))
    assert chunked.as_dict() == pytest.approx(whole.as_dict())
    assert max(model.calls) <= 7 and sum(model.calls) == len(ids)
    assert seen[-1] == (len(model.calls), len(model.calls))
    assert document_chunks(np.array([5, 1, 6, 1, 7, 1]), 1, 4) == [(0, 4), (4, 6)]
    assert document_chunks(np.array([5, 5, 5, 1, 6, 1]), 1, 2) == [(0, 4), (4, 6)]  # long document alone


def test_zero_probability_tokens_make_figures_infinite_not_skipped():
    table = np.array(BIGRAM)
    table[A] = [0, 1 / 2, 1 / 2, 0]                               # <unk> impossible after a
    result = evaluate_model(BigramTable(table), IDS, count_text(TEXTS), unk_id=UNK)
    assert result.zero_probability_tokens == 1
    assert math.isinf(result.perplexity_per_token) and math.isinf(result.bits_per_byte)
    assert result.perplexity_per_token_excl_oov == pytest.approx(2.0)   # 4 bits over 4 tokens


@pytest.mark.parametrize("ids,counts,needle", [
    (np.array([], dtype=np.int64), TextCounts(1, 1, 0), "no tokens"),
    (np.array([A, EOS, A]), TextCounts(5, 2, 2), "not </s>"),
    (np.array([A, 9, EOS]), TextCounts(5, 2, 1), "vocabulary"),
    (IDS, TextCounts(7, 2, 3), "2 documents but the text counts say 3"),
])
def test_inconsistent_inputs_raise_input_errors(ids, counts, needle):
    with pytest.raises(InputError, match=needle):
        evaluate_model(BigramTable(BIGRAM), ids, counts, unk_id=UNK)


def test_compare_models_ranks_by_bits_per_byte():
    bigram = evaluate_model(BigramTable(BIGRAM), IDS, count_text(TEXTS), unk_id=UNK)
    uniform = evaluate_model(UniformModel(4), IDS, count_text(TEXTS), unk_id=UNK)
    broken = dict(uniform.as_dict(), bits_per_byte=math.inf)
    rows = compare_models({"uniform": uniform, "broken": broken, "bigram": bigram.as_dict()})
    assert [r["model"] for r in rows] == ["bigram", "uniform", "broken"]
    assert [r["rank"] for r in rows] == [1, 2, 3]
    assert set(rows[0]) == {"rank", *TABLE_COLUMNS}
    assert rows[0]["bits_per_byte"] == pytest.approx(6 / 7)
    assert rows[1]["bits_per_byte"] == pytest.approx(5 * 2 / 7)     # 5 tokens x 2 bits over 7 bytes
    assert isinstance(bigram, Evaluation) and bigram.as_dict()["tokens"] == 5


def test_bits_per_byte_bar_chart_is_a_png_written_atomically(tmp_path):
    from matplotlib.image import imread

    bigram = evaluate_model(BigramTable(BIGRAM), IDS, count_text(TEXTS), unk_id=UNK)
    uniform = evaluate_model(UniformModel(4), IDS, count_text(TEXTS), unk_id=UNK)
    out = plot_bits_per_byte({"bigram": bigram, "uniform": uniform, "broken": {"bits_per_byte": math.inf}},
                             tmp_path / "charts" / "bits_per_byte.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    height, width, _ = imread(out).shape
    assert width == 700 and height > 100
    assert [p.name for p in out.parent.iterdir()] == ["bits_per_byte.png"]   # no temp file left behind


def test_per_word_perplexity_matches_kenlm_on_a_word_level_bigram(tmp_path):
    """Reference comparison: the same bigram table written as an ARPA file and scored by KenLM.

    With one token per whitespace word, our ``perplexity_per_word`` must be KenLM's perplexity (words
    plus one ``</s>`` per sentence, ``<s>`` context only) and our total NLL its log10 score times ln 10.
    """
    kenlm = pytest.importorskip("kenlm")
    words = ["<s>", "</s>", "<unk>", "a", "b"]
    rng = np.random.default_rng(3)
    probs = np.zeros((5, 5))
    probs[:, 1:] = rng.dirichlet(np.ones(4), size=5)
    lines = ["\\data\\", "ngram 1=5", f"ngram 2={4 * 4}", "", "\\1-grams:", "-99\t<s>\t0"]
    lines += [f"{math.log10(0.25):.10f}\t{w}\t0" for w in words[1:]]
    lines += ["", "\\2-grams:"]
    lines += [f"{math.log10(probs[i, j]):.10f}\t{words[i]} {words[j]}" for i in (0, 2, 3, 4) for j in (1, 2, 3, 4)]
    lines += ["", "\\end\\", ""]
    arpa = tmp_path / "bigram.arpa"
    arpa.write_text("\n".join(lines))
    reference = kenlm.Model(str(arpa))

    texts = ["a b a", "b", "a a b b"]
    ids = np.array([i for text in texts for i in [words.index(w) for w in text.split()] + [EOS]])
    result = evaluate_model(BigramTable(probs), ids, count_text(texts), unk_id=2)
    log10_total = sum(reference.score(text, bos=True, eos=True) for text in texts)
    assert result.total_nll == pytest.approx(-log10_total * math.log(10), rel=1e-6)
    assert result.perplexity_per_word == pytest.approx(10 ** (-log10_total / (8 + 3)), rel=1e-6)
    assert reference.perplexity("a b a") == pytest.approx(
        evaluate_model(BigramTable(probs), ids[:4], count_text(texts[:1]), unk_id=2).perplexity_per_word,
        rel=1e-6)


def test_samples_markdown_names_whitespace_only_samples():
    """The histogram's greedy sample is its most probable token again and again ("\\n" here): samples.md
    says so instead of printing a fence of blank lines; other samples stay verbatim in a fence."""
    from arcore.compare import samples_markdown

    md = samples_markdown({"histogram": {"greedy": "\n" * 50, "beam": " \n \n"},
                           "rnn": {"greedy": "ROMEO:\nHe"}}, "")
    assert "only whitespace: 50 x '\\n'" in md
    assert "only whitespace: ' \\n \\n'" in md
    assert "```text\nROMEO:\nHe\n```" in md
    assert "\n\n\n\n" not in md
