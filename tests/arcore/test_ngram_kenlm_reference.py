"""Reference comparison: lmplz's figures on WikiText-2 (train on valid, test on test), from the corpora README.

Modified Kneser-Ney perplexities within 0.01% for orders 2-5, identical n-gram counts per order, equal
discounts (to the 6 digits lmplz prints), and the add-one trigram's 8509.11 / 8296.35.
"""

from pathlib import Path

import numpy as np
import pytest

from arcore.ngram.additive import estimate_add_k
from arcore.ngram.counts import count_ngrams
from arcore.ngram.index import NGramIndex
from arcore.ngram.kneser_ney import estimate_kneser_ney
from arcore.ngram.query import query
from arcore.ngram.text import WordVocabulary, read_sentences

CORPUS = Path(__file__).resolve().parents[2] / ".." / "shared" / "corpora" / "wikitext-2"

# order: (ppl incl. OOV, ppl excl. OOV, total log10 prob, n-grams per order)
KENLM = {
    2: (399.66, 288.31, -635078.91, [13779, 96257]),
    3: (379.25, 272.63, -629521.18, [13779, 96257, 167173]),
    4: (376.09, 270.45, -628633.43, [13779, 96257, 167173, 195650]),
    5: (375.05, 269.74, -628340.98, [13779, 96257, 167173, 195650, 202766]),
}
DISCOUNTS_5 = [(0.520525, 1.0785, 1.65471), (0.769858, 1.23225, 1.55437), (0.895255, 1.3133, 1.59412),
               (0.955675, 1.49199, 1.51993), (0.967053, 1.5978, 1.82057)]


@pytest.fixture(scope="module")
def data():
    if not (CORPUS / "valid.txt").exists():
        pytest.skip("shared WikiText-2 corpus not available")

    def prepare(name):  # lmplz refuses <unk> in its input: the README replaces it by __unk__
        return [["__unk__" if w == "<unk>" else w for w in s] for s in read_sentences(CORPUS / name)]

    train, test = prepare("valid.txt"), prepare("test.txt")
    vocab = WordVocabulary.from_sentences(train)
    ids, _ = vocab.encode(train)
    test_ids, oov = vocab.encode(test)
    counts = count_ngrams(ids, 5, vocab.bos_id, vocab.eos_id, vocab_size=len(vocab))
    return vocab, counts, test_ids, oov


def truncated(counts, order):
    from arcore.ngram.counts import NGramCounts
    return NGramCounts(order, counts.vocab_size, counts.bos_id, counts.eos_id, counts.ngrams[:order],
                       counts.counts[:order])


@pytest.mark.parametrize("order", [2, 3, 4, 5])
def test_kneser_ney_matches_lmplz(data, order):
    vocab, counts, test_ids, oov = data
    ppl, ppl_excl, total, sizes = KENLM[order]
    model = estimate_kneser_ney(truncated(counts, order), unk_id=vocab.unk_id)
    assert model.num_ngrams() == sizes
    result = query(model, test_ids, oov)
    assert (result.tokens, result.oov) == (244102, 11896)
    assert result.perplexity == pytest.approx(ppl, rel=1e-4)
    assert result.perplexity_excl_oov == pytest.approx(ppl_excl, rel=1e-4)
    assert result.total_log10 == pytest.approx(total, rel=1e-7)
    if order == 5:
        for ours, theirs in zip(model.info["discounts"], DISCOUNTS_5):
            np.testing.assert_allclose(ours, theirs, rtol=5e-6)


def test_add_one_trigram(data):
    vocab, counts, test_ids, oov = data
    # vocabulary 13,778 = 13,776 types + </s> + <unk> (= the README's <oov> class): V minus <s>
    assert len(vocab) - 1 == 13778
    result = query(estimate_add_k(NGramIndex.from_counts(truncated(counts, 3)), 1.0), test_ids, oov)
    assert result.perplexity == pytest.approx(8509.11, abs=0.005)
    assert result.perplexity_excl_oov == pytest.approx(8296.35, abs=0.005)
