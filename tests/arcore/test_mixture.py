"""Mixtures: hand-worked EM step, EM never lowers the held-out likelihood, every mixture distribution sums
to 1, scoring equals teacher-forced decoding, every decoder runs, bad mixtures are refused."""

from __future__ import annotations

import numpy as np
import pytest

from arcore.errors import ConfigError
from arcore.mixture import (MixtureModel, fit_mixture, fit_mixture_weights, mixture_loglik, mixture_name,
                            nested_to_flat)
from arcore.ngram.counts import count_ngrams
from arcore.ngram.histogram import UnigramModel
from arcore.ngram.index import NGramIndex
from arcore.ngram.kneser_ney import estimate_kneser_ney

BOS, EOS, V = 1, 2, 9


def _parts(seed: int = 0):
    rng = np.random.default_rng(seed)
    train = np.concatenate([np.append(rng.integers(3, V, size=rng.integers(2, 15)), EOS) for _ in range(80)])
    kn = estimate_kneser_ney(NGramIndex.from_counts(count_ngrams(train, 3, BOS, EOS, vocab_size=V)),
                             discount_fallback=(0.5, 1.0, 1.5))
    uni = UnigramModel.fit(train, V, BOS, EOS, pseudocount=1.0)
    from tests.arcore.test_infinigram import _model

    inf = _model([d[:-1].tolist() for d in np.split(train, np.flatnonzero(train == EOS)[:-1] + 1)],
                 V, max_suffix=6, weights=0.6)
    heldout = np.concatenate([np.append(rng.integers(3, V, size=rng.integers(2, 15)), EOS) for _ in range(30)])
    return {"kn": kn, "unigram": uni, "infinigram": inf}, heldout


def test_em_step_hand_worked():
    # one token, parts give it 0.5 and 0.1, start at (0.5, 0.5): posteriors (0.833, 0.167) are the next weights
    assert nested_to_flat(np.array([1.0, 0.5, 0.5])).tolist() == [0.25, 0.25, 0.5]
    w1 = fit_mixture_weights(np.array([[0.5, 0.1]]), iterations=1)
    np.testing.assert_allclose(w1, [0.5 * 0.5 / 0.3, 0.5 * 0.1 / 0.3])


def test_em_never_lowers_the_heldout_likelihood():
    rng = np.random.default_rng(1)
    probs = rng.dirichlet(np.ones(V), size=(400, 3))[:, :, 0]  # 3 parts' probabilities of 400 tokens
    probs[:, 2] *= 3 * (rng.random(400) < 0.3)  # a part that is sometimes much better, often useless
    lls = [mixture_loglik(probs, fit_mixture_weights(probs, iterations=k)) for k in range(1, 40)]
    assert all(b >= a - 1e-9 for a, b in zip(lls, lls[1:]))
    start = mixture_loglik(probs, nested_to_flat(np.array([1.0, 0.5, 0.5])))
    assert lls[0] >= start and lls[-1] > start
    best = fit_mixture_weights(probs)
    for w in rng.dirichlet(np.ones(3), size=50):  # no other weights do better on the fit data
        assert mixture_loglik(probs, w) <= mixture_loglik(probs, best) + 1e-6


def test_mixture_of_real_models_sums_to_one_and_scores_as_it_decodes():
    parts, heldout = _parts()
    mix = fit_mixture(parts, heldout)
    assert mix.names == ("kn", "unigram", "infinigram")
    assert mix.weights.sum() == pytest.approx(1.0) and np.all(mix.weights > 0)
    doc = heldout[: np.flatnonzero(heldout == EOS)[0] + 1]
    scored = mix.score(doc)
    state = mix.initial_state(2)
    for t, w in enumerate(doc):
        rows = mix.next_logprobs(state)
        np.testing.assert_allclose(np.exp(rows).sum(axis=1), 1.0)
        assert rows[0, BOS] == -np.inf
        assert rows[0, w] == pytest.approx(scored[t])
        state = mix.select(mix.advance(state, np.array([w, w])), np.array([1, 0]))
    # the mixture beats each part on the held-out text its weights were fit on
    nll = -mix.score(heldout).sum()
    for part in parts.values():
        assert nll < -part.score(heldout).sum()


def test_every_decoder_runs_on_a_mixture():
    from arcore.decode import DecodeConfig, generate

    parts, _ = _parts(2)
    mix = MixtureModel((parts["kn"], parts["infinigram"]), np.array([0.4, 0.6]), ("kn", "infinigram"))
    for strategy in ("greedy", "sample", "top-k", "top-p", "beam"):
        cfg = DecodeConfig(strategy=strategy, max_tokens=8, top_k=3 if strategy == "top-k" else None,
                           top_p=0.8 if strategy == "top-p" else None, seed=1)
        out = generate(mix, [3, 4], cfg)
        assert out and all(0 <= i < V and i != BOS for g in out for i in g.ids)


def test_bad_mixtures_are_refused():
    parts, _ = _parts()
    with pytest.raises(ConfigError, match="at least two"):
        MixtureModel((parts["kn"],), np.array([1.0]))
    with pytest.raises(ConfigError, match="summing to 1"):
        MixtureModel((parts["kn"], parts["unigram"]), np.array([0.7, 0.7]))
    other = UnigramModel.fit(np.array([3, 4, EOS]), V + 1, BOS, EOS, pseudocount=1.0)
    with pytest.raises(ConfigError, match="one tokenizer"):
        MixtureModel((parts["kn"], other), np.array([0.5, 0.5]))
    assert mixture_name(["rnn", "ngram-kneser-ney"]) == "mixture-rnn_ngram-kneser-ney"


def test_evaluate_config_refuses_bad_mixtures():
    from pydantic import ValidationError

    from arcore.compare import EvaluateConfig

    with pytest.raises(ValidationError, match="at least two different"):
        EvaluateConfig(mixtures=[["rnn", "rnn"]])
    with pytest.raises(ValidationError, match="not mixtures"):
        EvaluateConfig(mixtures=[["rnn", "mixture-rnn_infinigram"]])


def test_score_memo_runs_a_part_once_per_chunk_and_gives_the_same_floats():
    from arcore.mixture import ScoreMemo

    parts, heldout = _parts(4)
    calls = []

    class Counting:
        def __init__(self, model):
            self.model = model
            self.vocab_size, self.bos_id, self.eos_id = model.vocab_size, model.bos_id, model.eos_id

        def __getattr__(self, name):
            return getattr(self.model, name)

        def score(self, ids):
            calls.append(len(ids))
            return self.model.score(ids)

    memo = ScoreMemo(Counting(parts["kn"]))
    mixes = [MixtureModel((memo, parts[o]), np.array([0.5, 0.5])) for o in ("unigram", "infinigram")]
    first = memo.score(heldout)
    for m in mixes:
        m.score(heldout)
    assert calls == [heldout.size]
    np.testing.assert_array_equal(first, parts["kn"].score(heldout))
    small = ScoreMemo(Counting(parts["kn"]), max_values=5)  # over the bound: scored again, same floats
    np.testing.assert_array_equal(small.score(heldout), small.score(heldout))
    assert calls == [heldout.size] * 3
