"""The RNN behind arcore.lm.LanguageModel: vectorized score == step-by-step decoding, resets per document."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from arcore.errors import InputError
from arcore.lm import LanguageModel
from arcore.rnn.checkpoint import save_model
from arcore.rnn.config import RNNConfig
from arcore.rnn.lm import RNNLanguageModel
from arcore.rnn.model import RNNModel

BOS, EOS, V = 1, 2, 13


@pytest.fixture(params=["lstm", "gru"])
def lm(request, tmp_path):
    torch.manual_seed(0)
    model = RNNModel(RNNConfig(cell=request.param, emb_size=8, hidden_size=8, layers=2, dropout=0.3), V)
    save_model(tmp_path / "m", model)
    return RNNLanguageModel.from_dir(tmp_path / "m", bos_id=BOS, eos_id=EOS)


def _docs(rng, n):
    return [np.append(rng.integers(3, V, size=rng.integers(0, 9)), EOS) for _ in range(n)]


def _stepwise(lm, ids):
    """log P(ids[t] | document prefix) by initial_state/advance, one token at a time."""
    out, state = [], lm.initial_state(1)
    for tok in ids:
        out.append(lm.next_logprobs(state)[0, tok])
        state = lm.initial_state(1) if tok == EOS else lm.advance(state, np.array([tok]))
    return np.array(out)


def test_implements_the_interface(lm):
    assert isinstance(lm, LanguageModel)
    assert (lm.vocab_size, lm.bos_id, lm.eos_id) == (V, BOS, EOS)


def test_vectorized_score_equals_stepwise_decoding(lm):
    ids = np.concatenate(_docs(np.random.default_rng(0), 12) + [np.array([5, 6, 7])])  # trailing doc, no </s>
    scores = lm.score(ids)
    assert scores.dtype == np.float64 and scores.shape == ids.shape and np.all(scores < 0)
    np.testing.assert_allclose(scores, _stepwise(lm, ids), rtol=1e-5, atol=1e-6)
    lm.batch_docs = 3  # other batching and padding: same numbers
    np.testing.assert_allclose(lm.score(ids), scores, rtol=1e-6, atol=1e-7)


def test_each_document_is_scored_from_the_start_state(lm):
    a, b = _docs(np.random.default_rng(1), 2)
    together = lm.score(np.concatenate([a, b]))
    np.testing.assert_allclose(together[len(a):], lm.score(b), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(together[: len(a)], lm.score(a), rtol=1e-6, atol=1e-7)


def test_distributions_sum_to_one_and_select_reorders_rows(lm):
    state = lm.advance(lm.initial_state(3), np.array([4, 5, 6]))
    probs = np.exp(lm.next_logprobs(state))
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-12)
    picked = lm.select(state, np.array([2, 2, 0]))
    np.testing.assert_array_equal(lm.next_logprobs(picked), lm.next_logprobs(state)[[2, 2, 0]])
    after = lm.advance(picked, np.array([7, 7, 7]))
    assert np.allclose(lm.next_logprobs(after)[0], lm.next_logprobs(after)[1])


def test_bos_reads_as_the_document_start_and_bad_ids_are_refused(lm):
    from_bos = lm.advance(lm.initial_state(1), np.array([BOS]))
    from_eos = lm.advance(lm.initial_state(1), np.array([EOS]))
    np.testing.assert_array_equal(lm.next_logprobs(from_bos), lm.next_logprobs(from_eos))
    with pytest.raises(InputError, match="outside"):
        lm.score(np.array([3, V, EOS]))
    assert lm.score(np.array([], dtype=np.int64)).shape == (0,)
