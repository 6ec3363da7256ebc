"""The Transformer behind arcore.lm.LanguageModel: K/V cache == no cache == score, sliding window, resets."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from arcore.decode.greedy import greedy
from arcore.errors import InputError
from arcore.lm import LanguageModel
from arcore.transformer.checkpoint import save_model
from arcore.transformer.config import TransformerConfig
from arcore.transformer.lm import TransformerLanguageModel
from arcore.transformer.model import TransformerModel

BOS, EOS, V, C = 1, 2, 13, 8


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture
def model(tmp_path):
    torch.manual_seed(0)
    save_model(tmp_path / "m", TransformerModel(TransformerConfig(layers=2, d_model=16, heads=2, context=C,
                                                                  dropout=0.2), V))
    return tmp_path / "m"


@pytest.fixture
def lm(model):
    return TransformerLanguageModel.from_dir(model, bos_id=BOS, eos_id=EOS)


def _docs(rng, n, longest=9):
    return [np.append(rng.integers(3, V, size=rng.integers(0, longest)), EOS) for _ in range(n)]


def _stepwise(lm, ids):
    """log P(ids[t] | document prefix) by initial_state/advance, one token at a time."""
    out, state = [], lm.initial_state(1)
    for tok in ids:
        out.append(lm.next_logprobs(state)[0, tok])
        state = lm.initial_state(1) if tok == EOS else lm.advance(state, np.array([tok]))
    return np.array(out)


def _reference(lm, doc):
    """The sliding-window rule of the module docstring, computed from scratch: one full pass per prediction."""
    inputs = np.concatenate([[EOS], doc[:-1]])
    out = []
    for i in range(len(doc)):
        b = 0 if i < C else ((i - C) // lm.slide + 1) * lm.slide
        logits, _ = lm.model.forward_cached(torch.as_tensor(inputs[b : i + 1]).view(1, -1))
        out.append(torch.log_softmax(logits[0, -1].double(), -1)[doc[i]].item())
    return np.array(out)


def test_implements_the_interface(lm):
    assert isinstance(lm, LanguageModel)
    assert (lm.vocab_size, lm.bos_id, lm.eos_id, lm.slide) == (V, BOS, EOS, C // 2)


def test_cached_and_uncached_decoding_give_the_same_logprobs(model):
    cached = TransformerLanguageModel.from_dir(model, bos_id=BOS, eos_id=EOS)
    plain = TransformerLanguageModel.from_dir(model, bos_id=BOS, eos_id=EOS, kv_cache=False)
    rng = np.random.default_rng(0)
    a, b = cached.initial_state(3), plain.initial_state(3)
    assert a.cache is not None and b.cache is None
    for step in range(3 * C):  # well past the context: the window slides several times
        np.testing.assert_allclose(cached.next_logprobs(a), plain.next_logprobs(b), rtol=0, atol=1e-5)
        tokens = rng.integers(3, V, size=3)
        a, b = cached.advance(a, tokens), plain.advance(b, tokens)
        assert a.position == b.position == step + 2 and a.window.shape[1] <= C
        if a.window.shape[1] < C:
            assert a.cache[0][0].shape[2] == a.window.shape[1]  # one cached key per window position


def test_vectorized_score_equals_stepwise_decoding_and_the_sliding_rule(lm):
    rng = np.random.default_rng(1)
    docs = _docs(rng, 10) + _docs(rng, 3, longest=4 * C) + [np.array([5, 6, 7])]  # long docs, trailing doc
    ids = np.concatenate(docs)
    scores = lm.score(ids)
    assert scores.dtype == np.float64 and scores.shape == ids.shape and np.all(scores < 0)
    np.testing.assert_allclose(scores, _stepwise(lm, ids), rtol=0, atol=1e-5)
    long_doc = max(docs[:-1], key=len)
    assert len(long_doc) > 2 * C
    start = sum(len(d) for d in docs[: next(i for i, d in enumerate(docs) if d is long_doc)])
    np.testing.assert_allclose(scores[start : start + len(long_doc)], _reference(lm, long_doc), atol=1e-5)
    lm.batch_docs = 3  # other batching and padding: same numbers
    np.testing.assert_allclose(lm.score(ids), scores, rtol=0, atol=1e-6)


def test_an_exact_sliding_window_is_a_choice(model):
    lm = TransformerLanguageModel.from_dir(model, bos_id=BOS, eos_id=EOS, slide=1)
    doc = np.append(np.random.default_rng(2).integers(3, V, size=3 * C), EOS)
    np.testing.assert_allclose(lm.score(doc), _reference(lm, doc), atol=1e-5)
    np.testing.assert_allclose(lm.score(doc), _stepwise(lm, doc), atol=1e-5)
    assert lm.windows(C + 2) == [(0, C, 0), (1, C + 1, C), (2, C + 2, C + 1)]
    with pytest.raises(InputError, match="slide must lie in"):
        TransformerLanguageModel.from_dir(model, bos_id=BOS, eos_id=EOS, slide=C)


def test_each_document_is_scored_from_the_start_state(lm):
    a, b = _docs(np.random.default_rng(3), 2)
    together = lm.score(np.concatenate([a, b]))
    np.testing.assert_allclose(together[len(a) :], lm.score(b), rtol=0, atol=1e-6)
    np.testing.assert_allclose(together[: len(a)], lm.score(a), rtol=0, atol=1e-6)


def test_distributions_sum_to_one_and_select_reorders_rows(lm):
    state = lm.advance(lm.initial_state(3), np.array([4, 5, 6]))
    probs = np.exp(lm.next_logprobs(state))
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-12)
    picked = lm.select(state, np.array([2, 2, 0]))
    np.testing.assert_array_equal(lm.next_logprobs(picked), lm.next_logprobs(state)[[2, 2, 0]])
    after = lm.advance(picked, np.array([7, 7, 7]))
    np.testing.assert_allclose(lm.next_logprobs(after)[0], lm.next_logprobs(after)[1], atol=1e-12)
    alone = lm.advance(lm.advance(lm.initial_state(1), np.array([4])), np.array([7]))  # row 0 read 4
    np.testing.assert_allclose(lm.next_logprobs(after)[2], lm.next_logprobs(alone)[0], atol=1e-6)
    # states are values: advancing ``state`` again after selecting from it gives the same numbers
    np.testing.assert_array_equal(lm.next_logprobs(lm.advance(state, np.array([7, 7, 7])))[[2, 2]],
                                  lm.next_logprobs(after)[:2])


def test_bos_reads_as_the_document_start_and_bad_ids_are_refused(lm):
    from_bos = lm.advance(lm.initial_state(1), np.array([BOS]))
    from_eos = lm.advance(lm.initial_state(1), np.array([EOS]))
    np.testing.assert_array_equal(lm.next_logprobs(from_bos), lm.next_logprobs(from_eos))
    with pytest.raises(InputError, match="outside"):
        lm.score(np.array([3, V, EOS]))
    with pytest.raises(InputError, match="outside"):
        lm.advance(lm.initial_state(1), np.array([-1]))
    assert lm.score(np.array([], dtype=np.int64)).shape == (0,)


def test_decoders_run_on_it_past_the_context(lm):
    out = greedy(lm, [5, 6], max_tokens=3 * C)
    assert 1 <= len(out.ids) <= 3 * C
    # greedy's per-token log-probs are the model's own scores of the generated continuation
    doc = np.array([5, 6, *out.ids])
    np.testing.assert_allclose(_stepwise(lm, doc)[2:], out.logprobs, atol=1e-6)
