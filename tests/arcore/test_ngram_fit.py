"""NGramConfig validation, fit_ngram_models on id arrays, save -> load round trip; Histogram."""

import re

import numpy as np
import pytest
from pydantic import ValidationError

from arcore.ngram.counts import load_counts
from arcore.ngram.fit import NGramConfig, fit_ngram_models, load_ngram_models, save_ngram_models
from arcore.ngram.histogram import Histogram, UnigramModel
from arcore.ngram.query import query

UNK, BOS, EOS, PAD = 0, 1, 2, 3
V = 40


def docs(seed, n):
    rng = np.random.default_rng(seed)
    p = 1.0 / np.arange(1, V - 3) ** 1.2
    return np.concatenate([np.append(rng.choice(np.arange(4, V), size=rng.integers(1, 15), p=p / p.sum()), EOS)
                           for _ in range(n)])


def test_config_defaults_and_refusals():
    cfg = NGramConfig()
    assert cfg.order == 5 and cfg.models == ["kneser-ney", "laplace", "interpolated"]
    assert NGramConfig(discount_fallback=None).discount_fallback is None  # lmplz's strict behaviour
    for bad in ({"order": 0}, {"models": ["witten-bell"]}, {"colour": 1}, {"add_k": 0},
                {"models": ["katz", "katz"]}, {"models": []}):
        with pytest.raises(ValidationError, match=next(iter(bad))):
            NGramConfig(**bad)


def test_fit_save_load_round_trip(tmp_path):
    train, valid = docs(0, 400), docs(1, 60)
    cfg = NGramConfig(order=3, models=["kneser-ney", "laplace", "interpolated", "katz", "add-k", "mle"],
                      memory_budget_mb=16, discount_fallback=(0.5, 1.0, 1.5))  # 40 ids: unigram n1..n4 are 0
    models = fit_ngram_models(cfg, train, valid, V, BOS, EOS, UNK, tmp_path / "work")
    assert set(models) == set(cfg.models)
    counts = load_counts(tmp_path / "work" / "counts")
    assert counts.order == 3 and counts.counts[0].sum() == len(train) + (train == EOS).sum()
    words = ["<unk>", "<s>", "</s>", " "] + [f"w{i}" for i in range(4, V)]  # " " cannot be an ARPA word
    written = save_ngram_models(models, tmp_path / "out", counts=counts, words=words)
    assert re.search(r"\t3\n", (tmp_path / "out" / "laplace.arpa").read_text())  # id 3 named "3"
    assert "kneser-ney.arpa" in written and (tmp_path / "out" / "models.json").exists()
    back = load_ngram_models(tmp_path / "out")
    for name, model in models.items():
        np.testing.assert_array_equal(back[name].score(valid), model.score(valid))
        assert back[name].info == model.info
        # scored through the binary's mapped probing tables, never tables rebuilt in memory
        assert back[name].tables is not None
        assert all(t.slots.base is not None and not t.slots.flags.writeable for t in back[name].tables[1:])
    # unseen ids (here <unk> and <pad>) are zerotons that share the uniform mass; smoothing beats add-one
    ppl = {name: query(m, valid).perplexity for name, m in models.items()}
    assert ppl["kneser-ney"] < ppl["laplace"] and np.isfinite(ppl["katz"])
    assert np.exp(models["kneser-ney"].logprob[0][PAD]) > 0


def test_histogram_fit_prob_sample():
    h = Histogram.fit(["a", "b", "a", "c"])
    assert h.support == ("a", "b", "c") and h.prob("a") == 0.5 and h.prob("z") == 0.0
    draws = h.sample(4000, np.random.default_rng(0))
    assert abs(draws.count("a") / 4000 - 0.5) < 0.03 and set(draws) == {"a", "b", "c"}
    smoothed = Histogram.fit([(0, 1)], support=[(0, 1), (1, 0)], pseudocount=1.0)
    assert smoothed.probs_of([(1, 0), (0, 1)]).tolist() == [1 / 3, 2 / 3]


def test_unigram_model_is_a_histogram_over_ids():
    ids = docs(2, 50)
    m = UnigramModel.fit(ids, V, BOS, EOS)
    assert np.exp(m.logprob).sum() == pytest.approx(1.0) and m.logprob[BOS] == -np.inf
    assert np.exp(m.logprob[EOS]) == pytest.approx((ids == EOS).mean())
    np.testing.assert_array_equal(m.next_logprobs(m.initial_state(2))[1], m.logprob)


def test_bits_per_byte_of_uniform_model():
    from arcore.ngram.query import bits_per_byte

    uniform = UnigramModel.fit(np.zeros(0, dtype=np.int64), V, BOS, EOS, pseudocount=1.0)
    ids = docs(3, 10)
    # every token costs log2(V - 1) bits; pretend the source text had 2 bytes per token
    assert bits_per_byte(uniform, ids, 2 * ids.size) == pytest.approx(np.log2(V - 1) / 2)
