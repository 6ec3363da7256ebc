"""Binary models: writer -> load round trips, probing tables exact under any memory budget, refusals."""

import json

import numpy as np
import pytest

from arcore.errors import InputError, StageError
from arcore.ngram.additive import estimate_add_k, estimate_mle
from arcore.ngram.binary import BinaryModelWriter, is_binary_model, load_binary, save_binary
from arcore.ngram.counts import count_ngrams, with_bos
from arcore.ngram.index import NGramIndex, lookup
from arcore.ngram.interpolation import estimate_interpolated
from arcore.ngram.katz import estimate_katz
from arcore.ngram.kneser_ney import estimate_kneser_ney
from arcore.ngram.probing import EMPTY, KeyHash, hash64, place

BOS, EOS = 1, 2


def corpus(seed, docs, vocab, top=None):
    """Zipf-ish documents over ids 3..top (default: the whole vocabulary), each ending with </s>."""
    rng = np.random.default_rng(seed)
    words = np.arange(3, top or vocab)
    p = 1.0 / np.arange(1, words.size + 1) ** 1.1
    return np.concatenate([np.append(rng.choice(words, size=rng.integers(1, 15), p=p / p.sum()), EOS)
                           for _ in range(docs)])


def models(order, vocab=40, seed=0):
    """Every estimator on one random corpus; ids >= vocab - 5 are never seen in training."""
    idx = NGramIndex.from_counts(count_ngrams(corpus(seed, 300, vocab, vocab - 5), order, BOS, EOS,
                                              vocab_size=vocab))
    valid = corpus(seed + 1, 50, vocab, vocab - 5)
    return [estimate_mle(idx, unk_id=0), estimate_add_k(idx, 0.5), estimate_katz(idx),
            estimate_interpolated(idx, valid), estimate_kneser_ney(idx, discount_fallback=(0.5, 1, 1.5))]


def reference_score(m, ids):
    """The backoff rule by ``np.searchsorted`` lookups, in the same order of float operations as
    ``BackoffModel.score`` (so equal bit for bit)."""
    ext, offset = with_bos(ids, m.bos_id, m.eos_id)
    rows = [ext]
    for n in range(2, m.order + 1):
        r = np.full(ext.size, -1, dtype=np.int64)
        r[1:] = lookup(np.asarray(m.keys[n - 1]), rows[-1][:-1], ext[1:], m.vocab_size)
        rows.append(r)
    logp = np.asarray(m.logprob[0])[ext].astype(np.float64)
    matched = np.ones(ext.size, dtype=np.int64)
    for n in range(2, m.order + 1):
        hit = rows[n - 1] >= 0
        logp[hit] = m.logprob[n - 1][rows[n - 1][hit]]
        matched[hit] = n
    for k in range(1, m.order):
        ctx = np.full(ext.size, -1, dtype=np.int64)
        ctx[1:] = rows[k - 1][:-1]
        use = (ctx >= 0) & (matched <= k)
        logp[use] += m.logbackoff[k - 1][ctx[use]]
    return logp[offset > 0]


@pytest.mark.parametrize("order", [1, 2, 4])
def test_round_trip_arrays_and_scores_identical(tmp_path, order):
    test = np.concatenate([corpus(7, 80, 40), corpus(8, 5, 40, 6)])  # unseen words, repeated short docs
    for m in models(order):
        back = load_binary(save_binary(m, tmp_path / m.name))
        assert (back.name, back.order, back.vocab_size, back.bos_id, back.eos_id, back.unk_id, back.info) == \
            (m.name, m.order, m.vocab_size, m.bos_id, m.eos_id, m.unk_id, m.info)
        assert back.num_ngrams() == m.num_ngrams()
        for n in range(1, order + 1):
            assert np.array_equal(back.keys[n - 1], m.keys[n - 1])
            assert np.array_equal(back.logprob[n - 1], m.logprob[n - 1])
            assert np.array_equal(back.logbackoff[n - 1], m.logbackoff[n - 1])
        ours = back.score(test)
        assert np.array_equal(ours, m.score(test)), m.name
        assert np.array_equal(ours, reference_score(m, test)), m.name
        state = back.advance(back.state_of(np.array([[3, 4], [5, 39]])), np.array([3, 7]))
        assert np.array_equal(state, m.advance(m.state_of(np.array([[3, 4], [5, 39]])), np.array([3, 7])))
        assert np.array_equal(back.next_logprobs(state), m.next_logprobs(state))


def test_loaded_arrays_are_read_only_maps_with_extension_flags(tmp_path):
    m = models(3)[-1]
    back = load_binary(save_binary(m, tmp_path / "kn", memory_budget_bytes=4096))
    assert not back.keys[1].flags.writeable and not back._tables[1].slots.flags.writeable
    assert isinstance(back.keys[2].base, np.memmap)
    # which entries prefix a key of the next order: a bool array for ids, the row's sign in the tables
    first_words = np.unique(m.keys[1] // m.vocab_size)
    assert np.flatnonzero(back._tables[0]).tolist() == first_words.tolist()
    for n in (2, 3):
        table = back._tables[n - 1]
        rows = table.slots["row"][table.slots["hash"] != EMPTY]
        extends = np.zeros(len(m.keys[n - 1]), dtype=bool)
        if n < 3:
            extends[np.unique(m.keys[n] // m.vocab_size)] = True
        assert sorted(np.where(rows < 0, ~rows, rows)) == list(range(len(m.keys[n - 1])))
        assert np.array_equal(np.sort(rows[rows >= 0]), np.flatnonzero(extends))
        assert np.array_equal(table.find(m.keys[n - 1]), np.arange(len(m.keys[n - 1])))


def test_streamed_chunks_and_tiny_budget_give_identical_files(tmp_path):
    """Chunks of any size, and a budget that splits every table into many partitions, write the same
    bytes as one chunk per order in one partition (placement depends on the hashes only)."""
    m = models(4, vocab=60, seed=3)[-1]
    save_binary(m, tmp_path / "whole")
    rng = np.random.default_rng(0)
    with BinaryModelWriter(tmp_path / "streamed", name=m.name, order=m.order, vocab_size=m.vocab_size,
                           bos_id=m.bos_id, eos_id=m.eos_id, unk_id=m.unk_id, memory_budget_bytes=2048) as w:
        for n in range(1, m.order + 1):
            cuts = np.unique(np.concatenate([[0, len(m.logprob[n - 1])],
                                             rng.integers(0, len(m.logprob[n - 1]) + 1, 6)]))
            for lo, hi in zip(cuts[:-1], cuts[1:]):
                w.append(n, None if n == 1 else m.keys[n - 1][lo:hi], m.logprob[n - 1][lo:hi],
                         None if n == m.order else m.logbackoff[n - 1][lo:hi])
        w.close(m.info)
    for path in sorted((tmp_path / "whole").iterdir()):
        assert path.read_bytes() == (tmp_path / "streamed" / path.name).read_bytes(), path.name
    assert not list(tmp_path.glob("*.partial"))


@pytest.mark.parametrize("budget", [1 << 30, 3000])
def test_hash_lookups_exact_with_any_budget(tmp_path, budget):
    """Keys of a big order against np.searchsorted ground truth, present and absent keys alike."""
    rng = np.random.default_rng(1)
    V = m1 = 1000
    keys = np.unique(rng.integers(0, m1 * V, 20_000))
    with BinaryModelWriter(tmp_path / "m", name="t", order=2, vocab_size=V, bos_id=BOS, eos_id=EOS, unk_id=None,
                           memory_budget_bytes=budget) as w:
        w.append(1, None, np.full(V, -np.log(V)), np.zeros(V))
        w.append(2, keys, -rng.random(keys.size), None)
        w.close()
    table = load_binary(tmp_path / "m")._tables[1]
    queries = np.concatenate([keys, rng.integers(0, m1 * V, 20_000), [0, m1 * V - 1]])
    rng.shuffle(queries)
    pos = np.minimum(np.searchsorted(keys, queries), keys.size - 1)
    assert np.array_equal(table.find(queries), np.where(keys[pos] == queries, pos, -1))
    found, rec = table.probe(queries)
    assert np.array_equal(rec[found, 2], load_binary(tmp_path / "m").logprob[1][table.find(queries)[found]])
    stored = table.slots["hash"][table.slots["hash"] != EMPTY]
    assert stored.size == keys.size and np.all(np.diff(stored.astype(np.float64)) >= 0)  # ordered


def test_keyhash_hand_worked():
    """``place`` is linear probing in home order; a query stops at the first larger hash."""
    assert place(np.array([3, 3, 3, 7]), 0).tolist() == [3, 4, 5, 7]
    assert place(np.array([3, 3, 8]), 5).tolist() == [5, 6, 8]
    assert hash64(np.array([-1]))[0] == EMPTY
    table = KeyHash.build(np.array([10, 26, 27, 1000]), np.log([0.1, 0.2, 0.3, 0.4]))
    assert table.find(np.array([26, 7, 1000, 10, 28])).tolist() == [1, -1, 3, 0, -1]
    assert KeyHash.build(np.zeros(0, dtype=np.int64)).find(np.array([5])).tolist() == [-1]


def test_incomplete_directory_refused(tmp_path):
    m = models(2)[-1]
    with pytest.raises(RuntimeError):
        with BinaryModelWriter(tmp_path / "m", name="x", order=2, vocab_size=m.vocab_size, bos_id=BOS,
                               eos_id=EOS, unk_id=None) as w:
            w.append(1, None, m.logprob[0], m.logbackoff[0])
            raise RuntimeError("estimator failed")
    assert not (tmp_path / "m").exists() and not (tmp_path / "m.partial").exists()
    with pytest.raises(StageError, match="no meta.json.*rerun the ngram stage"):
        load_binary(tmp_path / "m")

    path = save_binary(m, tmp_path / "m")
    assert is_binary_model(path) and not is_binary_model(tmp_path / "nothing")
    meta = json.loads((path / "meta.json").read_text())
    assert meta["num_ngrams"] == m.num_ngrams() and meta["files"]["order2.table.npy"] > 0
    (path / "order2.keys.npy").write_bytes((path / "order2.keys.npy").read_bytes()[:-8])
    with pytest.raises(StageError, match="order2.keys.npy has .* bytes.*rerun"):
        load_binary(path)
    (path / "meta.json").rename(path / "meta.json.bak")
    with pytest.raises(StageError, match="no meta.json"):
        load_binary(path)
    assert not is_binary_model(path)
    partial = tmp_path / "p.partial"
    partial.mkdir()
    (partial / "meta.json").write_text("{}")
    with pytest.raises(StageError, match="partial"):
        load_binary(partial)


def test_rewrite_replaces_a_finished_model(tmp_path):
    a, b = models(2)[0], models(2)[-1]
    save_binary(a, tmp_path / "m")
    save_binary(b, tmp_path / "m")
    assert load_binary(tmp_path / "m").name == b.name and sorted(p.name for p in tmp_path.iterdir()) == ["m"]


def test_writer_refuses_bad_streams(tmp_path):
    kw = dict(name="x", order=3, vocab_size=10, bos_id=BOS, eos_id=EOS, unk_id=None)
    lp = np.zeros(10)
    with pytest.raises(InputError, match="orders must come as 1, 2, ..., 3"):
        with BinaryModelWriter(tmp_path / "a", **kw) as w:
            w.append(1, None, lp, lp)
            w.append(3, np.zeros(0, dtype=np.int64), np.zeros(0), None)
            w.append(2, np.array([5]), np.zeros(1), np.zeros(1))
    with pytest.raises(InputError, match="distinct, increasing across chunks"):
        with BinaryModelWriter(tmp_path / "b", **kw) as w:
            w.append(1, None, lp, lp)
            w.append(2, np.array([5, 9]), np.zeros(2), np.zeros(2))
            w.append(2, np.array([9]), np.zeros(1), np.zeros(1))
    with pytest.raises(InputError, match="one entry per id"):
        with BinaryModelWriter(tmp_path / "c", **kw) as w:
            w.append(1, None, lp[:4], lp[:4])
            w.append(2, np.array([5]), np.zeros(1), np.zeros(1))
    assert not list(tmp_path.iterdir())


def test_skipped_top_order_is_empty(tmp_path):
    with BinaryModelWriter(tmp_path / "m", name="x", order=3, vocab_size=5, bos_id=BOS, eos_id=EOS,
                           unk_id=0) as w:
        w.append(1, None, np.log(np.full(5, 0.25)), np.zeros(5))
        w.append(2, np.array([1 * 5 + 3]), np.log([0.5]), np.log([0.9]))
        w.close({"note": "tiny"})
    back = load_binary(tmp_path / "m")
    assert back.num_ngrams() == [5, 1, 0] and back.info == {"note": "tiny"}
    np.testing.assert_allclose(back.score(np.array([3, 4, 2])), np.log([0.5, 0.9 * 0.25, 0.25]))
