"""count_ngrams: hand-worked counts, chunked/spilled counting equals one pass, Parquet round trip."""

from collections import Counter

import numpy as np
import pytest

from arcore.errors import InputError
from arcore.ngram.counts import chunk_bounds, count_ngrams, load_counts, merge_runs, save_counts, with_bos

BOS, EOS = 1, 2


def three_sentences():
    """``a b`` / ``a b`` / ``b`` with a=3, b=4: tokens ``<s> a b </s> <s> a b </s> <s> b </s>``.

    unigrams: <s> 3, a 2, b 3, </s> 3
    bigrams:  (<s> a) 2, (<s> b) 1, (a b) 2, (b </s>) 3
    trigrams: (<s> a b) 2, (a b </s>) 2, (<s> b </s>) 1
    """
    return np.array([3, 4, EOS, 3, 4, EOS, 4, EOS])


def python_counts(ids, order):
    """The straightforward dict counter (reference)."""
    out = [Counter() for _ in range(order)]
    doc = [BOS]
    for w in ids.tolist():
        doc.append(w)
        if w == EOS:
            for n in range(1, order + 1):
                for i in range(len(doc) - n + 1):
                    out[n - 1][tuple(doc[i:i + n])] += 1
            doc = [BOS]
    return out


def test_hand_worked_counts():
    c = count_ngrams(three_sentences(), 3, BOS, EOS, vocab_size=5)
    assert c.as_dict(1) == {(1,): 3, (3,): 2, (4,): 3, (2,): 3}
    assert c.as_dict(2) == {(1, 3): 2, (1, 4): 1, (3, 4): 2, (4, 2): 3}
    assert c.as_dict(3) == {(1, 3, 4): 2, (3, 4, 2): 2, (1, 4, 2): 1}
    for mat in c.ngrams:  # lexicographically sorted, distinct
        keys = [tuple(r) for r in mat.tolist()]
        assert keys == sorted(set(keys))


def test_with_bos_example():
    ext, offset = with_bos(np.array([5, 6, 2, 5, 2]), BOS, EOS)
    assert ext.tolist() == [1, 5, 6, 2, 1, 5, 2]
    assert offset.tolist() == [0, 1, 2, 3, 0, 1, 2]


def test_matches_dict_counter_on_random_documents():
    rng = np.random.default_rng(0)
    docs = [np.append(rng.integers(3, 12, size=rng.integers(0, 9)), EOS) for _ in range(300)]
    ids = np.concatenate(docs)
    c = count_ngrams(ids, 4, BOS, EOS, vocab_size=12)
    ref = python_counts(ids, 4)
    for n in range(1, 5):
        assert c.as_dict(n) == dict(ref[n - 1])


def test_spilled_runs_equal_single_pass(tmp_path):
    rng = np.random.default_rng(1)
    ids = np.concatenate([np.append(rng.integers(3, 40, size=rng.integers(1, 30)), EOS) for _ in range(2000)])
    whole = count_ngrams(ids, 3, BOS, EOS, vocab_size=40)
    spill = tmp_path / "spill"
    chunked = count_ngrams(ids, 3, BOS, EOS, vocab_size=40, memory_budget_bytes=200_000, spill_dir=spill)
    assert len(list(spill.glob("run-*/order3.parquet"))) >= 2  # the budget forced sorted runs to disk
    for n in range(3):
        np.testing.assert_array_equal(whole.ngrams[n], chunked.ngrams[n])
        np.testing.assert_array_equal(whole.counts[n], chunked.counts[n])


def test_chunk_bounds_hand_worked():
    ids = np.array([5, 6, EOS, 5, EOS, 7, EOS])  # documents end at 3, 5, 7
    assert chunk_bounds(ids, EOS, 2).tolist() == [0, 3, 5, 7]
    assert chunk_bounds(ids, EOS, 100).tolist() == [0, 7]
    assert chunk_bounds(ids, EOS, 100, cuts=[3]).tolist() == [0, 3, 7]
    assert chunk_bounds(ids, EOS, 100, cuts=[0, 5, 7]).tolist() == [0, 5, 7]
    with pytest.raises(InputError, match="after an eos_id"):
        chunk_bounds(ids, EOS, 100, cuts=[4])


def test_per_shard_chunks_on_a_process_pool_equal_one_pass(tmp_path):
    """The map step in other processes, cut at every 50th document and by a small budget: same counts."""
    from concurrent.futures import ProcessPoolExecutor

    rng = np.random.default_rng(2)
    ids = np.concatenate([np.append(rng.integers(3, 40, size=rng.integers(1, 30)), EOS) for _ in range(2000)])
    ids = ids.astype(np.uint16)  # shards store uint16: chunks keep it on the way to the workers
    whole = count_ngrams(ids, 4, BOS, EOS, vocab_size=40)
    ends = np.flatnonzero(ids == EOS) + 1
    seen = []
    with ProcessPoolExecutor(2) as pool:
        def mapper(fn, items):
            items = list(items)
            seen.extend(len(i) for i in items)
            return pool.map(fn, items)

        fanned = count_ngrams(ids, 4, BOS, EOS, vocab_size=40, memory_budget_bytes=300_000,
                              spill_dir=tmp_path / "spill", cuts=ends[49::50], mapper=mapper)
    assert len(seen) >= 40 and sum(seen) == ids.size
    for n in range(4):
        np.testing.assert_array_equal(whole.ngrams[n], fanned.ngrams[n])
        np.testing.assert_array_equal(whole.counts[n], fanned.counts[n])


def test_merge_runs_example():
    mat, cnt = merge_runs([np.array([[1, 2]]), np.array([[1, 2], [0, 3]])], [np.array([4]), np.array([1, 7])], 10)
    assert mat.tolist() == [[0, 3], [1, 2]] and cnt.tolist() == [7, 5]


def test_parquet_round_trip(tmp_path):
    c = count_ngrams(three_sentences(), 3, BOS, EOS, vocab_size=5)
    save_counts(c, tmp_path / "counts")
    back = load_counts(tmp_path / "counts")
    assert (back.order, back.vocab_size, back.bos_id, back.eos_id) == (3, 5, BOS, EOS)
    for n in range(1, 4):
        assert back.as_dict(n) == c.as_dict(n)


def test_refuses_partial_document_and_inner_bos():
    with pytest.raises(InputError, match="end with eos"):
        count_ngrams(np.array([3, 4]), 2, BOS, EOS)
    with pytest.raises(InputError, match="bos_id"):
        count_ngrams(np.array([3, BOS, 4, EOS]), 2, BOS, EOS)


def test_counts_of_counts_hand_worked():
    from arcore.ngram.counts import counts_of_counts

    c = count_ngrams(three_sentences(), 2, BOS, EOS, vocab_size=5)
    (r1, n1), (r2, n2) = counts_of_counts(c)
    assert dict(zip(r1.tolist(), n1.tolist())) == {2: 1, 3: 3}  # a 2; <s>, b, </s> 3
    assert dict(zip(r2.tolist(), n2.tolist())) == {1: 1, 2: 2, 3: 1}
