"""Decoders and filters against tiny models that implement ``arcore.lm.LanguageModel`` in the test.

Two toy models: ``BigramTable`` (state = previous token, a fixed conditional table) and ``HistoryModel``
(every distinct history gets its own random distribution, so a decoder that gathers the wrong rows with
``select`` or forgets the prompt gets different numbers). Token ids: 0 = ``<s>``, 1 = ``</s>``, rest words.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from arcore.decode import (DecodeConfig, apply_filters, beam_search, generate, greedy, length_penalty,
                           sample, temperature_scale, top_k_filter, top_p_filter)
from arcore.errors import ConfigError
from arcore.lm import LanguageModel

BOS, EOS = 0, 1
# Upper 0.1% points of the chi-square distribution (scipy.stats.chi2.isf(0.001, df)).
CHI2_999 = {1: 10.828, 6: 22.458}


class BigramTable:
    """P(x_t | x_{t-1}) from a fixed ``(V, V)`` probability table; each document starts after ``<s>``."""

    def __init__(self, probs):
        with np.errstate(divide="ignore"):
            self.table = np.log(np.asarray(probs, dtype=np.float64))
        self.vocab_size, self.bos_id, self.eos_id = len(self.table), BOS, EOS

    def initial_state(self, batch_size):
        return np.full(batch_size, BOS, dtype=np.int64)

    def next_logprobs(self, state):
        return self.table[state]

    def advance(self, state, tokens):
        return np.asarray(tokens, dtype=np.int64).copy()

    def select(self, state, rows):
        return state[np.asarray(rows)]

    def score(self, ids):
        ids = np.asarray(ids)
        prev = np.concatenate([[BOS], ids[:-1]])
        prev[1:][ids[:-1] == EOS] = BOS
        return self.table[prev, ids]


class HistoryModel:
    """A random distribution per full history (Dirichlet(0.7) over ``</s>`` and the words, seeded by it)."""

    def __init__(self, vocab_size=5, seed=0, end_possible=True):
        self.vocab_size, self.bos_id, self.eos_id = vocab_size, BOS, EOS
        self.seed, self.end_possible, self.calls = seed, end_possible, 0

    def _logprobs(self, history):
        rng = np.random.default_rng([self.seed, len(history), *history])
        probs = np.zeros(self.vocab_size)
        probs[1:] = rng.dirichlet(np.full(self.vocab_size - 1, 0.7))
        if not self.end_possible:
            probs[EOS] = 0.0
        with np.errstate(divide="ignore"):
            return np.log(probs / probs.sum())

    def initial_state(self, batch_size):
        state = np.empty(batch_size, dtype=object)
        state[:] = [()] * batch_size
        return state

    def next_logprobs(self, state):
        self.calls += 1
        return np.stack([self._logprobs(history) for history in state])

    def advance(self, state, tokens):
        out = np.empty(len(state), dtype=object)
        out[:] = [history + (int(t),) for history, t in zip(state, tokens)]
        return out

    def select(self, state, rows):
        return state[np.asarray(rows)]

    def score(self, ids):
        out, history = [], ()
        for t in ids:
            out.append(self._logprobs(history)[t])
            history = () if t == EOS else history + (int(t),)
        return np.array(out)


# <s> -> a (0.5), b (0.3), </s> (0.2); a -> b (0.6); b -> </s> (0.7): greedy from <s> is "a b </s>".
BIGRAM = BigramTable([
    [0.0, 0.2, 0.5, 0.3],
    [0.0, 0.4, 0.3, 0.3],
    [0.0, 0.3, 0.1, 0.6],
    [0.0, 0.7, 0.2, 0.1],
])


def test_toy_models_follow_the_protocol():
    for model in (BIGRAM, HistoryModel()):
        assert isinstance(model, LanguageModel)
        rows = np.exp(model.next_logprobs(model.initial_state(3)))
        np.testing.assert_allclose(rows.sum(axis=1), 1.0)


# ---- filters -------------------------------------------------------------------------------------------

def test_worked_filter_examples():
    lp = np.log([[0.5, 0.3, 0.15, 0.05]])
    np.testing.assert_allclose(np.exp(temperature_scale(lp, 0.5)), [[0.25, 0.09, 0.0225, 0.0025]] / np.float64(0.365))
    np.testing.assert_allclose(np.exp(temperature_scale(lp, 1.0)), np.exp(lp))
    np.testing.assert_allclose(np.exp(top_k_filter(lp, 2)), [[0.625, 0.375, 0, 0]])
    np.testing.assert_allclose(np.exp(top_p_filter(lp, 0.8)), [[0.625, 0.375, 0, 0]])  # mass exactly p
    np.testing.assert_allclose(np.exp(top_p_filter(lp, 0.81)), [[0.5, 0.3, 0.15, 0]] / np.float64(0.95))
    np.testing.assert_allclose(np.exp(top_p_filter(lp, 0.3)), [[1, 0, 0, 0]])
    np.testing.assert_allclose(np.exp(top_p_filter(lp, 1.0)), np.exp(lp))
    impossible = np.array([[-np.inf, -np.inf], [0.0, -np.inf]])  # a broken row stays -inf, never nan
    assert np.array_equal(apply_filters(impossible, 0.5, 1, 0.5), impossible)


def test_ties_break_towards_lower_ids():
    flat = np.log(np.full((1, 4), 0.25))
    assert np.isfinite(top_k_filter(flat, 2)).tolist() == [[True, True, False, False]]
    assert np.isfinite(top_p_filter(flat, 0.5)).tolist() == [[True, True, False, False]]
    assert np.isfinite(top_p_filter(flat, 0.51)).tolist() == [[True, True, True, False]]


def test_top_p_keeps_the_smallest_set_whose_mass_reaches_p():
    rng = np.random.default_rng(7)
    probs = rng.dirichlet(np.full(30, 0.3), size=200)
    ps = rng.uniform(0.05, 0.99, size=200)
    for row, p in zip(probs, ps):
        kept = np.isfinite(top_p_filter(np.log(row)[None, :], p)[0])
        mass = row[kept].sum()
        assert mass >= p - 1e-12                                   # reaches p
        assert mass - row[kept].min() < p                          # one token fewer would not
        assert row[kept].min() >= row[~kept].max(initial=0.0)       # and it is the most probable tokens


def test_filters_are_vectorized_row_by_row():
    lp = np.log(np.random.default_rng(1).dirichlet(np.ones(12), size=6))
    batched = apply_filters(lp, 0.8, top_k=5, top_p=0.7)
    for i in range(len(lp)):
        np.testing.assert_array_equal(batched[i], apply_filters(lp[i:i + 1], 0.8, top_k=5, top_p=0.7)[0])
    np.testing.assert_allclose(np.exp(batched).sum(axis=1), 1.0)


def test_filters_compose_temperature_then_top_k_then_top_p():
    lp = np.log([[0.6, 0.2, 0.1, 0.06, 0.04]])
    composed = apply_filters(lp, temperature=3.0, top_k=4, top_p=0.65)
    # Temperature 3: p^(1/3) / sum = [0.321, 0.223, 0.177, 0.149, 0.130]; top-4 renormalises to
    # [0.369, 0.256, 0.203, 0.171]; the first two hold 0.625 < 0.65, so the nucleus has three tokens.
    assert np.isfinite(composed).sum() == 3
    # Nucleus first (0.6 + 0.2 >= 0.65: two tokens) and temperature after would keep only two.
    assert np.isfinite(temperature_scale(top_p_filter(lp, 0.65), 3.0)).sum() == 2
    p = lp[0, :4] / 3.0
    p = np.exp(p - p.max())
    p = p / p.sum()
    np.testing.assert_allclose(np.exp(composed[0, :3]), p[:3] / p[:3].sum())


# ---- greedy, sampling -----------------------------------------------------------------------------------

def test_greedy_follows_the_argmax_path_and_reports_model_logprobs():
    result = greedy(BIGRAM, max_tokens=10)
    assert result.ids == (2, 3, 1) and result.finished
    np.testing.assert_allclose(result.logprobs, np.log([0.5, 0.6, 0.7]))
    assert result.score == pytest.approx(math.log(0.5 * 0.6 * 0.7))
    assert greedy(BIGRAM, max_tokens=2).ids == (2, 3) and not greedy(BIGRAM, max_tokens=2).finished


def test_prompt_is_fed_through_advance_first():
    assert greedy(BIGRAM, [3], max_tokens=10).ids == (1,)
    model = HistoryModel(seed=3)
    result = greedy(model, [2, 4], max_tokens=6)
    expected = np.argmax(model._logprobs((2, 4)))
    assert result.ids[0] == expected
    if result.finished:
        full = model.score(np.array([2, 4, *result.ids]))
        np.testing.assert_allclose(result.logprobs, full[2:])


def test_temperature_near_zero_equals_greedy():
    for seed in range(4):
        model = HistoryModel(seed=seed)
        best = greedy(model, max_tokens=8).ids
        samples = sample(model, temperature=1e-4, max_tokens=8, num_samples=5, seed=seed)
        assert all(s.ids == best for s in samples)
        assert sample(model, top_k=1, max_tokens=8, seed=seed)[0].ids == best


def test_sampled_frequencies_match_the_model_chi_square():
    """Joint frequencies of (x1, x2) over 20,000 samples from BIGRAM, against P(x1) P(x2 | x1)."""
    n = 20_000
    draws = sample(BIGRAM, max_tokens=2, num_samples=n, seed=2024)
    cells = [(EOS,)] + [(a, b) for a in (2, 3) for b in (1, 2, 3)]
    probs = np.exp(BIGRAM.table)
    expected = np.array([probs[BOS, c[0]] * (probs[c[0], c[1]] if len(c) == 2 else 1.0) for c in cells]) * n
    counts = {c: 0 for c in cells}
    for d in draws:
        counts[d.ids] += 1
    observed = np.array([counts[c] for c in cells])
    assert observed.sum() == n and expected.sum() == pytest.approx(n)
    df = len(cells) - 1
    chi2 = float(np.sum((observed - expected) ** 2 / expected))
    wrong = np.full(len(cells), n / len(cells))                    # the test would notice a wrong sampler
    assert df == 6 and chi2 < CHI2_999[df]
    assert float(np.sum((observed - wrong) ** 2 / wrong)) > 10 * CHI2_999[df]


def test_filtered_sampling_frequencies_match_the_filtered_distribution():
    n = 20_000
    draws = sample(BIGRAM, temperature=0.7, top_k=2, max_tokens=1, num_samples=n, seed=5)
    first = np.array([d.ids[0] for d in draws])
    assert set(first.tolist()) <= {2, 3}                           # top-2 of <s>: a (0.5), b (0.3)
    weights = np.array([0.5, 0.3]) ** (1 / 0.7)
    expected = weights / weights.sum() * n
    observed = np.array([np.sum(first == 2), np.sum(first == 3)])
    assert float(np.sum((observed - expected) ** 2 / expected)) < CHI2_999[1]
    # Reported log-probs stay the model's, not the filtered distribution's.
    np.testing.assert_allclose(draws[0].logprobs[0], BIGRAM.table[BOS, draws[0].ids[0]])


def test_reported_logprobs_are_the_models_for_every_row():
    """Rows finish at different steps and leave the batch; every row must keep its own history."""
    model = HistoryModel(seed=6)
    draws = sample(model, [3], temperature=1.5, max_tokens=10, num_samples=40, seed=0)
    assert len({len(d) for d in draws}) > 3
    for d in (*draws, *beam_search(model, [3], beam_width=6, n_best=6, max_tokens=10)):
        full = model.score(np.array([3, *d.ids] if d.finished else [3, *d.ids, EOS]))
        np.testing.assert_allclose(d.logprobs, full[1:1 + len(d)])
        assert d.logprob == pytest.approx(sum(d.logprobs))


def test_seeds_make_sampling_reproducible():
    model = HistoryModel(seed=11)
    a = sample(model, top_p=0.9, max_tokens=12, num_samples=8, seed=42)
    b = sample(model, top_p=0.9, max_tokens=12, num_samples=8, seed=42)
    c = sample(model, top_p=0.9, max_tokens=12, num_samples=8, seed=43)
    assert a == b
    assert [g.ids for g in a] != [g.ids for g in c]
    assert sample(model, seed=np.random.default_rng(42), max_tokens=12, num_samples=8, top_p=0.9) == a


# ---- beam search ----------------------------------------------------------------------------------------

def brute_force(model, max_tokens, alpha, form):
    """Every sequence of words followed by </s> with at most max_tokens tokens, best score first."""
    words = range(2, model.vocab_size)
    scored = []
    for n in range(max_tokens):
        for body in itertools.product(words, repeat=n):
            ids = (*body, EOS)
            lp = float(np.sum(model.score(np.array(ids))))
            scored.append((lp / length_penalty(len(ids), alpha, form), ids))
    return sorted(scored, reverse=True)


@pytest.mark.parametrize("alpha,form", [(0.0, "gnmt"), (0.7, "gnmt"), (1.0, "power")])
def test_beam_as_wide_as_the_tree_finds_the_exact_best_sequences(alpha, form):
    max_tokens, greedy_was_wrong = 4, 0
    for seed in range(6):
        model = HistoryModel(vocab_size=5, seed=seed)
        exact = brute_force(model, max_tokens, alpha, form)
        found = beam_search(model, beam_width=4 ** max_tokens, n_best=5, length_penalty_alpha=alpha,
                            length_penalty_form=form, max_tokens=max_tokens)
        assert [g.ids for g in found] == [ids for _, ids in exact[:5]]
        np.testing.assert_allclose([g.score for g in found], [s for s, _ in exact[:5]])
        assert all(g.finished and g.ids.count(EOS) == 1 and g.ids[-1] == EOS for g in found)
        narrow = beam_search(model, beam_width=2, n_best=2, length_penalty_alpha=alpha,
                             length_penalty_form=form, max_tokens=max_tokens)
        assert all(g.score <= found[0].score + 1e-12 for g in narrow if g.finished)
        g = greedy(model, max_tokens=max_tokens)
        greedy_was_wrong += g.ids != found[0].ids
    assert greedy_was_wrong > 0   # the toy models are hard enough for search to matter


def test_beam_width_one_is_greedy_and_stops_early():
    model = HistoryModel(seed=4)
    g = greedy(model, max_tokens=30)
    assert g.finished
    model.calls = 0
    (b,) = beam_search(model, beam_width=1, max_tokens=30)
    assert b.ids == g.ids and b.logprob == pytest.approx(g.logprob)
    assert model.calls <= len(g.ids) + 1     # exact early stopping: no step after the bound is beaten


def test_beam_prompt_and_unfinished_hypotheses():
    # After the prompt "b", </s> (0.7) beats every continuation.
    assert beam_search(BIGRAM, [3], beam_width=3, max_tokens=5)[0].ids == (1,)
    model = HistoryModel(seed=2, end_possible=False)
    best = beam_search(model, beam_width=3, n_best=3, max_tokens=4)
    assert len(best) == 3 and not any(g.finished for g in best)
    assert all(len(g.ids) == 4 for g in best)
    assert [g.score for g in best] == sorted((g.score for g in best), reverse=True)
    assert len({g.ids for g in best}) == 3


# ---- config and errors ----------------------------------------------------------------------------------

@pytest.mark.parametrize("call,needle", [
    (lambda: sample(BIGRAM, top_k=0), "top_k (--k)"),
    (lambda: sample(BIGRAM, top_k=2.5), "top_k (--k)"),
    (lambda: sample(BIGRAM, top_p=0.0), "top_p (--p)"),
    (lambda: sample(BIGRAM, top_p=1.5), "top_p (--p)"),
    (lambda: sample(BIGRAM, top_p=float("nan")), "top_p (--p)"),
    (lambda: sample(BIGRAM, temperature=0.0), "temperature (--temperature)"),
    (lambda: sample(BIGRAM, temperature=-1.0), "temperature (--temperature)"),
    (lambda: top_k_filter(np.zeros((1, 3)), 0), "top_k (--k)"),
    (lambda: greedy(BIGRAM, max_tokens=0), "max_tokens (--max-tokens)"),
    (lambda: beam_search(BIGRAM, beam_width=0), "beam_width (--beam-width)"),
    (lambda: beam_search(BIGRAM, beam_width=2, n_best=3), "n_best"),
    (lambda: greedy(BIGRAM, [], require_prompt=True), "prompt is empty"),
    (lambda: sample(BIGRAM, [], require_prompt=True), "prompt is empty"),
    (lambda: beam_search(BIGRAM, [], require_prompt=True), "prompt is empty"),
    (lambda: greedy(BIGRAM, [2, 9]), "not a token id"),
    (lambda: greedy(BIGRAM, [BOS, 2]), "<s>"),
    (lambda: greedy(BIGRAM, [2, EOS]), "</s>"),
    (lambda: DecodeConfig(top_k=0), "top_k (--k)"),
    (lambda: DecodeConfig(top_p=2.0), "top_p (--p)"),
    (lambda: DecodeConfig(temperature=0), "temperature (--temperature)"),
    (lambda: DecodeConfig(max_tokens=0), "max_tokens (--max-tokens)"),
    (lambda: DecodeConfig(strategy="beam", beam_width=0), "beam_width (--beam-width)"),
    (lambda: DecodeConfig(strategy="top-k"), "needs top_k"),
])
def test_bad_parameters_give_one_line_config_errors(call, needle):
    with pytest.raises(ConfigError) as info:
        call()
    assert needle in str(info.value) and "\n" not in str(info.value)


def test_generate_dispatches_every_strategy():
    model = HistoryModel(seed=9)
    out = {s: generate(model, [2], DecodeConfig(strategy=s, top_k=3, top_p=0.9, num_samples=2, n_best=2,
                                                max_tokens=6, seed=1))
           for s in ("greedy", "sample", "top-k", "top-p", "beam")}
    assert len(out["greedy"]) == 1 and len(out["sample"]) == 2 and len(out["beam"]) == 2
    assert out["greedy"][0] == greedy(model, [2], max_tokens=6)
    assert out["top-k"] == sample(model, [2], top_k=3, top_p=0.9, num_samples=2, max_tokens=6, seed=1)
    with pytest.raises(ConfigError, match="prompt is empty"):
        generate(model, [], DecodeConfig(), require_prompt=True)
    with pytest.raises(ValueError):  # pydantic's ValidationError: the config is frozen
        DecodeConfig().temperature = 2.0


def test_min_tokens_forbids_eos_for_every_decoder():
    """A model that puts 90% on </s> at every step still yields min_tokens tokens before </s>."""
    from arcore.decode import DecodeConfig, generate

    class EosLover:
        vocab_size, bos_id, eos_id = 4, 0, 1

        def initial_state(self, n):
            return np.zeros(n)

        def next_logprobs(self, state):
            return np.tile([-np.inf, np.log(0.9), np.log(0.05), np.log(0.05)], (len(state), 1))  # <s>: p = 0

        def advance(self, state, tokens):
            return state

        def select(self, state, rows):
            return state[np.asarray(rows)]

        def score(self, ids):
            return self.next_logprobs(np.zeros(len(ids)))[np.arange(len(ids)), ids]

    for strategy in ("greedy", "sample", "beam"):
        out = generate(EosLover(), [2], DecodeConfig(strategy=strategy, min_tokens=5, max_tokens=20))[0]
        assert len(out.ids) == 6 and out.ids[-1] == 1 and 1 not in out.ids[:5], (strategy, out.ids)
        plain = generate(EosLover(), [2], DecodeConfig(strategy=strategy, max_tokens=20))[0]
        assert len(plain.ids) < 6 or strategy == "sample"
