"""The streamed MLE, add-k, Katz and interpolated estimators: bit for bit their in-memory references.

Reference comparison: on random corpora (orders 1..5; budgets of 300 bytes, 16-row chunks whose contexts
straddle chunk ends and 9-element gather blocks, 4 KB and 1 MB), every ``stream_*`` of ``additive``,
``katz`` and ``interpolation`` gives the keys, log probabilities, log backoffs and info of its in-memory
estimator exactly (``assert_array_equal``: -inf where the reference has -inf). The edge cases: Katz with
K = 0..5 (discounts refused and K lowered, no discount at all, Doug Paul's fix where a context's counts all
exceed K, every id seen or some never seen), add-k with k below and above 1, interpolated with EM weights
on held-out ids (contexts and n-grams absent from train, ids never seen) and with given weights. Mechanism:
``find_present`` equals ``index.lookup``; the counts-of-counts give ``good_turing_discounts``. End to end:
``fit_ngram_models`` builds no ``NGramIndex`` and its binary models equal ``estimate`` on the same corpus.
"""

from __future__ import annotations

import numpy as np
import pytest

from arcore.ngram import streamed
from arcore.ngram.additive import estimate_add_k, estimate_mle, stream_add_k, stream_mle
from arcore.ngram.adjust_counts import adjust_counts, counts_of_counts
from arcore.ngram.corpus_count import corpus_count
from arcore.ngram.counts import count_ngrams
from arcore.ngram.diskarray import NpyFile, write_npy
from arcore.ngram.fit import NGramConfig, estimate, fit_ngram_models
from arcore.ngram.index import NGramIndex, lookup
from arcore.ngram.interpolate import ModelCollector
from arcore.ngram.interpolation import estimate_interpolated, stream_interpolated
from arcore.ngram.katz import discounts_from_counts_of_counts, estimate_katz, good_turing_discounts, stream_katz

BOS, EOS = 1, 2
BUDGETS = (300, 4096, 1 << 20)


def corpus(rng, vocab: int, docs: int, *, zipf: bool = True, repeat: int = 1, all_ids: bool = False) -> np.ndarray:
    """Random documents of ids 3..V-1 (0 too when ``all_ids``: then every id is seen), each ending with
    ``</s>``; one of 12 tokens so that every order up to 5 has n-grams; ``repeat`` copies of the lot (counts
    above K: Doug Paul's fix)."""
    low = 0 if all_ids else 3
    out = [np.concatenate([rng.integers(3, vocab, 12), [EOS]])]
    for _ in range(docs):
        length = int(rng.integers(0, 14))
        toks = (rng.zipf(1.3, length) % (vocab - 3) + 3) if zipf else rng.integers(3, vocab, length)
        if all_ids and length:
            toks[rng.random(length) < 0.1] = 0
        out.append(np.concatenate([toks, [EOS]]))
    if all_ids:
        out.append(np.array(list(range(3, vocab)) + [0, EOS]))
    ids = np.concatenate(out * repeat).astype(np.uint16)
    assert low == 0 or not np.any(ids == 0)
    return ids


def tables_of(tmp_path, ids: np.ndarray, order: int, vocab: int, budget: int):
    tables = corpus_count(lambda: [ids], order, vocab, BOS, EOS, tmp_path / "t", memory_budget_bytes=budget)
    adjust_counts(tables, budget)
    return tables


def assert_same_model(model, ref) -> None:
    assert (model.name, model.order, model.vocab_size) == (ref.name, ref.order, ref.vocab_size)
    for n in range(ref.order):
        np.testing.assert_array_equal(model.keys[n], ref.keys[n])
        np.testing.assert_array_equal(model.logprob[n], ref.logprob[n])
        np.testing.assert_array_equal(model.logbackoff[n], ref.logbackoff[n])
    assert model.info == ref.info


def collector(name: str, order: int, vocab: int) -> ModelCollector:
    return ModelCollector(name, order, vocab, BOS, EOS, None)


@pytest.mark.parametrize("seed", range(12))
def test_streamed_mle_and_add_k_are_bit_identical(tmp_path, seed):
    rng = np.random.default_rng(200 + seed)
    vocab, order = int(rng.integers(5, 50)), 1 + seed % 5
    ids = corpus(rng, vocab, int(rng.integers(2, 200)), zipf=seed % 3 != 0)
    counts = count_ngrams(ids, order, BOS, EOS, vocab_size=vocab)
    budget = BUDGETS[seed % 3]
    tables = tables_of(tmp_path, ids, order, vocab, budget)
    if budget == 300 and order > 1:
        assert max(tables.num_ngrams[1:]) > 4 * streamed.chunk_rows(budget)  # many chunks
    assert_same_model(stream_mle(tables, collector("mle", order, vocab), tmp_path / "w", budget), estimate_mle(counts))
    k = [0.5, 1.0, 3.0][seed // 4 % 3]
    name = "laplace" if k == 1.0 else "add-k"
    assert_same_model(stream_add_k(tables, collector(name, order, vocab), tmp_path / "w", budget, k),
                      estimate_add_k(counts, k, name=name))
    assert list((tmp_path / "w").iterdir()) == []  # every temporary removed


@pytest.mark.parametrize("seed", range(15))
def test_streamed_katz_is_bit_identical(tmp_path, seed):
    rng = np.random.default_rng(300 + seed)
    vocab, order = int(rng.integers(5, 40)), 1 + seed % 5
    K = [0, 1, 2, 3, 5][seed // 3 % 5]
    # repeated corpora: counts above K everywhere in some contexts; all_ids: no id left unseen at the unigrams
    ids = corpus(rng, vocab, int(rng.integers(2, 150)), repeat=4 if seed % 4 == 3 else 1, all_ids=seed % 4 == 1)
    counts = count_ngrams(ids, order, BOS, EOS, vocab_size=vocab)
    budget = BUDGETS[seed % 3]
    tables = tables_of(tmp_path, ids, order, vocab, budget)
    model = stream_katz(tables, collector("katz", order, vocab), tmp_path / "w", budget, K)
    assert_same_model(model, estimate_katz(counts, K))
    assert list((tmp_path / "w").iterdir()) == []


def test_katz_discounts_from_counts_of_counts():
    rng = np.random.default_rng(5)
    for trial in range(60):
        c = rng.zipf(1.5 + trial % 4, int(rng.integers(1, 400)))
        if trial % 5 == 0:
            c = c[c != 2]  # n_2 = 0: K must drop below 2
        K = int(trial % 7)
        n_r = [np.count_nonzero(c == r) for r in range(1, K + 2)]
        np.testing.assert_array_equal(discounts_from_counts_of_counts(n_r, K), good_turing_discounts(c, K))


def test_katz_counts_of_counts_streamed(tmp_path):
    rng = np.random.default_rng(8)
    ids = corpus(rng, 20, 300)
    counts = count_ngrams(ids, 3, BOS, EOS, vocab_size=20)
    tables = tables_of(tmp_path, ids, 3, 20, 300)
    for n in (2, 3):
        raw = counts.counts[n - 1]
        assert counts_of_counts(tables, n, 300, adjust=False, top=7) == tuple(
            int(np.count_nonzero(raw == r)) for r in range(1, 8))


@pytest.mark.parametrize("seed", range(12))
def test_streamed_interpolated_is_bit_identical(tmp_path, seed):
    rng = np.random.default_rng(400 + seed)
    vocab, order = int(rng.integers(5, 40)), 1 + seed % 5
    ids = corpus(rng, vocab, int(rng.integers(2, 150)))
    valid = corpus(rng, vocab, int(rng.integers(1, 60)), zipf=seed % 2 == 0, all_ids=seed % 3 == 0)  # id 0: unseen
    counts = count_ngrams(ids, order, BOS, EOS, vocab_size=vocab)
    budget = BUDGETS[seed % 3]
    tables = tables_of(tmp_path, ids, order, vocab, budget)
    model = stream_interpolated(tables, valid, collector("interpolated", order, vocab), tmp_path / "w", budget)
    assert_same_model(model, estimate_interpolated(counts, valid))
    assert list((tmp_path / "w").iterdir()) == []
    weights = rng.random(order).tolist()
    given = stream_interpolated(tables, None, collector("interpolated", order, vocab), tmp_path / "w", budget,
                                weights=weights)
    assert_same_model(given, estimate_interpolated(counts, None, weights=weights))


def test_find_present_equals_lookup(tmp_path):
    rng = np.random.default_rng(9)
    V = 50
    keys = np.unique(rng.integers(0, 400 * V, 3000)).astype(np.int64)
    f = NpyFile(write_npy(tmp_path / "k.npy", keys))
    prefix = rng.integers(-1, 420, 5000)
    words = rng.integers(0, V, 5000)
    ref = lookup(keys, prefix, words, V)
    assert 0 < np.count_nonzero(ref >= 0) < ref.size  # present and absent queries
    queries = np.where(prefix >= 0, prefix * V + words, -1)
    for block in (1, 7, 64, 10 ** 6):
        np.testing.assert_array_equal(streamed.find_present(f, queries, block), ref)
    np.testing.assert_array_equal(streamed.find_present(keys, queries, 7), ref)
    assert streamed.find_present(f, queries[:0], 7).size == 0


def test_fit_streams_every_estimator_without_an_index(tmp_path, monkeypatch):
    rng = np.random.default_rng(11)
    vocab, order = 30, 3
    train, valid = corpus(rng, vocab, 300), corpus(rng, vocab, 40)
    cfg = NGramConfig(order=order, models=["mle", "laplace", "add-k", "katz", "interpolated", "kneser-ney"],
                      memory_budget_mb=16, count_tables=False, discount_fallback=(0.5, 1.0, 1.5))
    with monkeypatch.context() as m:
        def refuse(*args, **kwargs):
            raise AssertionError("fit_ngram_models built an in-memory NGramIndex")
        m.setattr(NGramIndex, "__init__", refuse)
        models = fit_ngram_models(cfg, train, valid, vocab, BOS, EOS, 0, tmp_path / "work")
    counts = count_ngrams(train, order, BOS, EOS, vocab_size=vocab)
    for name, model in models.items():
        assert (tmp_path / "work" / f"{name}.binary" / "meta.json").exists()
        ref = estimate(name, counts, valid_ids=valid, unk_id=0, add_k=cfg.add_k, katz_max_count=cfg.katz_max_count,
                       discount_fallback=cfg.discount_fallback)
        assert_same_model(model, ref)
        assert model.unk_id == 0
    assert sorted(p.name for p in (tmp_path / "work").iterdir()) == sorted(
        [f"{name}.binary" for name in cfg.models] + ["unigram_counts.npy", ".counting.json"])
