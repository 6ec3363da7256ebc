"""Estimators: hand-worked probabilities, every distribution sums to 1, state API == vectorized score."""

import numpy as np
import pytest

from arcore.errors import InputError
from arcore.lm import LanguageModel
from arcore.ngram.additive import estimate_add_k, estimate_mle
from arcore.ngram.counts import count_ngrams
from arcore.ngram.histogram import UnigramModel
from arcore.ngram.index import NGramIndex
from arcore.ngram.interpolation import fit_interpolation_weights, heldout_components, estimate_interpolated
from arcore.ngram.katz import estimate_katz, good_turing_discounts
from arcore.ngram.kneser_ney import adjust_counts, estimate_kneser_ney, kneser_ney_discounts
from arcore.ngram.query import query

UNK, BOS, EOS, A, B = 0, 1, 2, 3, 4
V = 5


def corpus():
    """``a b`` / ``a b`` / ``b``: ``<s> a b </s> <s> a b </s> <s> b </s>`` (vocabulary <unk> <s> </s> a b)."""
    return np.array([A, B, EOS, A, B, EOS, B, EOS])


def index(order=2, ids=None):
    ids = corpus() if ids is None else ids
    return NGramIndex.from_counts(count_ngrams(ids, order, BOS, EOS, vocab_size=V))


def test_mle_and_laplace_hand_worked():
    """MLE: p(a|<s>) = 2/3, p(b|a) = 1, p(</s>|b) = 1.  Laplace (V' = 4 predictable ids):
    p(a|<s>) = (2+1)/(3+4) = 3/7, p(b|a) = (2+1)/(2+4) = 1/2, p(</s>|b) = (3+1)/(3+4) = 4/7,
    p(</s>|a) = (0+1)/(2+4) = 1/6, and an unseen context (here <unk>) gives 1/4."""
    sent = np.array([A, B, EOS])
    np.testing.assert_allclose(estimate_mle(index()).score(sent), np.log([2 / 3, 1, 1]))
    lap = estimate_add_k(index(), 1.0)
    np.testing.assert_allclose(lap.score(sent), np.log([3 / 7, 1 / 2, 4 / 7]))
    np.testing.assert_allclose(lap.score(np.array([UNK, A, EOS])), np.log([1 / 7, 1 / 4, 1 / 6]))


def test_kneser_ney_hand_worked():
    """Adjusted unigram counts (distinct left neighbours): a 1 ({<s>}), b 2 ({<s>, a}), </s> 1 ({b}).
    Order 1 has n3 = 0, so it takes the fallback D = 0.5 / 1 / 1.5. Order 2 (raw counts 2, 1, 2, 3):
    n1..n4 = 1, 2, 1, 0, Y = 1/5, D1 = 1 - 2 Y 2/1 = 0.2, D2 = 2 - 3 Y 1/2 = 1.7, D3+ = 3 - 4 Y 0 = 3.
    Unigrams: total 4, gamma = (0.5 + 1 + 0.5)/4 = 0.5 spread over V - 1 = 4 ids:
        p(a) = 0.5/4 + 0.125 = 0.25, p(b) = 1/4 + 0.125 = 0.375, p(</s>) = 0.25, p(<unk>) = 0.125.
    Bigrams: p(a|<s>) = (2 - 1.7)/3 + (1.9/3) 0.25 = 0.258333.., p(b|a) = 0.3/2 + (1.7/2) 0.375 = 0.46875,
        p(</s>|b) = (3 - 3)/3 + (3/3) 0.25 = 0.25."""
    idx = index()
    assert adjust_counts(idx)[0].tolist() == [0, 0, 1, 1, 2]
    d = kneser_ney_discounts(adjust_counts(idx), fallback=(0.5, 1.0, 1.5))
    assert d.values[0] == (0.5, 1.0, 1.5)
    np.testing.assert_allclose(d.values[1], (0.2, 1.7, 3.0))
    m = estimate_kneser_ney(idx, discount_fallback=(0.5, 1.0, 1.5))
    np.testing.assert_allclose(np.exp(m.logprob[0]), [0.125, 0.0, 0.25, 0.25, 0.375])
    np.testing.assert_allclose(m.score(np.array([A, B, EOS])), np.log([0.3 / 3 + 1.9 / 3 * 0.25, 0.46875, 0.25]))
    with pytest.raises(InputError, match="discount"):
        estimate_kneser_ney(idx)


def small_corpus(seed=0, docs=150, vocab=30):
    rng = np.random.default_rng(seed)
    # Zipf-ish words so that counts-of-counts are non-zero at every order.
    p = 1.0 / np.arange(1, vocab - 2) ** 1.1
    p /= p.sum()
    return np.concatenate([np.append(rng.choice(np.arange(3, vocab), size=rng.integers(1, 12), p=p), EOS)
                           for _ in range(docs)])


def all_models(order=3):
    train, valid = small_corpus(0), small_corpus(1, docs=40)
    idx = NGramIndex.from_counts(count_ngrams(train, order, BOS, EOS, vocab_size=30))
    return idx, [estimate_mle(idx), estimate_add_k(idx, 1.0), estimate_add_k(idx, 0.1), estimate_katz(idx),
                 estimate_interpolated(idx, valid), estimate_kneser_ney(idx, discount_fallback=(0.5, 1, 1.5))]


def test_every_distribution_sums_to_one():
    idx, models = all_models(3)
    rng = np.random.default_rng(2)
    for m in models:
        assert isinstance(m, LanguageModel)
        for k in (1, 2):  # every stored context of length k, plus unseen ones
            contexts = m.ngrams(k)
            contexts = contexts[contexts[:, -1] != EOS]
            unseen = rng.integers(3, 30, size=(20, k))
            for ctx in (contexts, unseen):
                probs = np.exp(m.next_logprobs(m.state_of(ctx)))
                np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-9, err_msg=m.name)
                assert np.all(probs[:, BOS] == 0)
        np.testing.assert_allclose(np.exp(m.next_logprobs(m.initial_state(1))).sum(), 1.0, rtol=1e-9)


def test_vectorized_score_equals_state_api():
    _, models = all_models(3)
    test = small_corpus(3, docs=20)
    ends = np.flatnonzero(test == EOS)
    for m in models:
        fast = m.score(test)
        slow, start = [], 0
        for end in ends:
            state = m.initial_state(1)
            for w in test[start:end + 1]:
                slow.append(m.next_logprobs(state)[0, w])
                state = m.advance(state, np.array([w]))
            start = end + 1
        np.testing.assert_allclose(fast, slow, rtol=1e-12, err_msg=m.name)
        batch = m.select(m.advance(m.initial_state(2), np.array([5, 6])), np.array([1, 1, 0]))
        np.testing.assert_allclose(m.next_logprobs(batch)[0], m.next_logprobs(batch)[1])


def test_uniform_model_perplexity_is_vocabulary_size():
    uniform = UnigramModel.fit(np.zeros(0, dtype=np.int64), vocab_size=50, bos_id=BOS, eos_id=EOS, pseudocount=1.0)
    ids = small_corpus(4, vocab=50)
    # 49 predictable ids: the vocabulary without <s>, which is never predicted.
    assert query(uniform, ids).perplexity == pytest.approx(49.0, rel=1e-12)
    lap = estimate_add_k(index(2), 1.0)  # an unseen context gives the uniform 1/V'
    assert np.exp(-lap.score(np.array([UNK, UNK, UNK, EOS]))[1:].mean()) == pytest.approx(V - 1)


def test_good_turing_and_katz_properties():
    counts = np.array([1] * 10 + [2] * 4 + [3] * 2)
    d = good_turing_discounts(counts, max_count=1)  # 1* = 2*4/10 = 0.8, d_1 = (0.8 - 0.8)/(1 - 0.8) = 0 -> K = 0
    assert d.tolist() == [1.0, 1.0]
    d = good_turing_discounts(counts, max_count=2)  # common = 3*2/10 = 0.6; d1 = (0.8-0.6)/0.4, d2 = (0.75-0.6)/0.4
    np.testing.assert_allclose(d[1:3], [0.5, 0.375])
    _, models = all_models(2)
    katz = [m for m in models if m.name == "katz"][0]
    assert np.all(np.isfinite(katz.score(small_corpus(5))))


def test_interpolation_em_improves_heldout_likelihood():
    idx, _ = all_models(3)
    comp, avail = heldout_components(idx, small_corpus(1, docs=40))
    mu = fit_interpolation_weights(comp, avail)
    assert np.all((mu[1:] > 0) & (mu[1:] < 1))

    def loglik(mu):
        w, rem = np.zeros_like(comp), np.ones(len(comp))
        for n in range(comp.shape[1] - 1, 0, -1):
            w[:, n] = np.where(avail[:, n], rem * mu[n], 0)
            rem = np.where(avail[:, n], rem * (1 - mu[n]), rem)
        w[:, 0] = rem
        return np.log((w * comp).sum(1)).sum()

    assert loglik(mu) >= loglik(np.array([1.0, 0.5, 0.5, 0.5])) - 1e-9
    assert loglik(mu) >= loglik(np.array([1.0, 0.9, 0.1, 0.3])) - 1e-9
