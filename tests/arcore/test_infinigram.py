"""The infini-gram: suffix arrays (hand-worked, three builders agree), counts, the paper's estimate against
brute-force counting on random corpora, distributions that sum to 1, and the stage on real shards."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.arcore.conftest import tiny_shards
from arcore.infinigram.index import SuffixIndex, write_reversed_stream
from arcore.infinigram.model import InfiniGramModel
from arcore.infinigram.suffix_array import (brute_force_suffix_array, build_suffix_array,
                                            prefix_doubling_suffix_array)
from arcore.ngram.histogram import UnigramModel

BOS, EOS = 1, 2


def test_suffix_array_hand_worked():
    ids = np.array([3, 1, 2, 3, 1, 2, 0])
    # suffixes sorted: [0] [1,2,0] [1,2,3,1,2,0] [2,0] [2,3,1,2,0] [3,1,2,0] [3,1,2,3,1,2,0]
    expected = [6, 4, 1, 5, 2, 3, 0]
    assert build_suffix_array(ids).tolist() == expected
    assert prefix_doubling_suffix_array(ids).tolist() == expected
    assert brute_force_suffix_array(ids).tolist() == expected


@pytest.mark.parametrize("vocab", [3, 200, 4096, 70000])
def test_suffix_array_builders_agree(vocab):
    rng = np.random.default_rng(vocab)
    for n in (1, 2, 17, 300):
        ids = rng.integers(0, vocab, size=n).astype(np.int64)
        if vocab > 3:  # repeats make ties deep
            ids[n // 2:] = ids[:n - n // 2]
        expected = brute_force_suffix_array(ids)
        assert np.array_equal(build_suffix_array(ids), expected)
        assert np.array_equal(prefix_doubling_suffix_array(ids), expected)


def _index(docs: list[list[int]], vocab: int) -> SuffixIndex:
    parts = [np.array(d + [EOS]) for d in docs]
    n = sum(p.size for p in parts)
    import tempfile

    d = Path(tempfile.mkdtemp())
    write_reversed_stream(parts, n, len(docs), vocab, BOS, EOS, d / "rev.npy")
    rev = np.load(d / "rev.npy")
    return SuffixIndex.from_arrays(rev, build_suffix_array(rev), vocab)


def test_counts_hand_worked():
    # stream: <s> 5 6 </s> <s> 5 7 </s> <s> 5 6 6 </s>
    index = _index([[5, 6], [5, 7], [5, 6, 6]], vocab=8)
    assert index.size == 13
    assert index.count([5]) == 3
    assert index.count([BOS, 5]) == 3
    assert index.count([5, 6]) == 2
    assert index.count([6]) == 3
    assert index.count([6, 6]) == 1
    assert index.count([BOS, 5, 6, 6, EOS]) == 1
    assert index.count([7, 7]) == 0 and index.count([3]) == 0
    assert index.count([EOS, BOS]) == 2
    _, lo, hi = index.match(lambda k, rows: np.array([5, BOS])[k].repeat(rows.size), np.array([2]))
    assert index.continuations(int(lo[0]), int(hi[0]), 8).tolist() == [0, 0, 0, 0, 0, 0, 2, 1]


def _model(docs, vocab, max_suffix=64, weights=0.5, buckets=4) -> InfiniGramModel:
    index = _index(docs, vocab)
    fallback = UnigramModel.from_counts(index.token_counts(), BOS, EOS, 1.0)
    return InfiniGramModel(index, vocab, BOS, EOS, max_suffix, fallback, np.full(2 * buckets, weights), buckets)


def _brute(stream: list[int], context: list[int]):
    """Longest suffix of ``context`` occurring in ``stream``, and the counts of its continuations."""
    def occurrences(seq):
        k = len(seq)
        return [i for i in range(len(stream) - k + 1) if stream[i:i + k] == seq]

    for start in range(len(context)):
        suffix = context[start:]
        occ = occurrences(suffix)
        if occ:
            follow = {}
            for i in occ:
                if i + len(suffix) < len(stream):
                    w = stream[i + len(suffix)]
                    follow[w] = follow.get(w, 0) + 1
            return len(suffix), len(occ), follow
    return 0, None, None


@pytest.mark.parametrize("seed", range(6))
def test_estimates_match_brute_force_counting(seed):
    rng = np.random.default_rng(seed)
    vocab = 6 + seed
    docs = [rng.integers(3, vocab, size=rng.integers(1, 12)).tolist() for _ in range(rng.integers(3, 15))]
    max_suffix = int(rng.integers(1, 6)) if seed % 2 else 64
    model = _model(docs, vocab, max_suffix)
    stream = [t for d in docs for t in [BOS] + d + [EOS]]
    queries = [rng.integers(3, vocab, size=rng.integers(1, 10)).tolist() for _ in range(6)] + docs[:2]
    ids = np.array([t for q in queries for t in q + [EOS]])
    e = model.estimates(ids)
    pos = 0
    for q in queries:
        doc = q + [EOS]
        for t, w in enumerate(doc):
            context = ([BOS] + doc[:t])[-max_suffix:]
            length, count, follow = _brute(stream, context)
            assert e.matched[pos] == length
            if length:
                assert e.count_context[pos] == count
                assert e.p_inf[pos] == pytest.approx(follow.get(w, 0) / count)
                assert bool(e.sparse[pos]) == (len(follow) == 1)
            pos += 1
    assert pos == ids.size
    # the decoders' view agrees with scoring: next_distribution over the same contexts
    contexts = [np.array(([BOS] + q[:t])[-max_suffix:]) for q in queries[:3] for t in range(len(q) + 1)]
    p_inf, matched, sparse = model.next_distribution(contexts)
    for ctx, row, m in zip(contexts, p_inf, matched):
        length, count, follow = _brute(stream, ctx.tolist())
        assert m == length
        if length:
            expected = np.zeros(vocab)
            for w, c in follow.items():
                expected[w] = c / count
            assert np.allclose(row, expected)


def test_every_distribution_sums_to_one_and_score_is_teacher_forced_decoding():
    rng = np.random.default_rng(7)
    docs = [rng.integers(3, 9, size=rng.integers(2, 20)).tolist() for _ in range(30)]
    model = _model(docs, 9, max_suffix=5, weights=0.7)
    doc = rng.integers(3, 9, size=12).tolist() + [EOS]
    scored = model.score(np.array(doc))
    state = model.initial_state(1)
    for t, w in enumerate(doc):
        row = model.next_logprobs(state)[0]
        assert np.exp(row).sum() == pytest.approx(1.0)
        assert row[BOS] == -np.inf and np.all(np.isfinite(np.delete(row, BOS)))
        assert row[w] == pytest.approx(scored[t])
        state = model.advance(state, np.array([w]))


def test_decoders_run_on_the_infinigram():
    from arcore.decode import DecodeConfig, generate

    rng = np.random.default_rng(3)
    docs = [rng.integers(3, 12, size=rng.integers(2, 20)).tolist() for _ in range(40)]
    model = _model(docs, 12)
    for strategy in ("greedy", "sample", "top-k", "top-p", "beam"):
        cfg = DecodeConfig(strategy=strategy, max_tokens=10, top_k=3 if strategy == "top-k" else None,
                           top_p=0.9 if strategy == "top-p" else None, seed=0)
        out = generate(model, [3], cfg)
        assert out and all(0 <= i < 12 for g in out for i in g.ids)


# -- the stage on real shards ------------------------------------------------------------------------------


def _shards(tmp_path: Path) -> tuple[Path, Path]:
    return tiny_shards(tmp_path, train_documents=300, shard_tokens=1024)


def test_stage_builds_a_mapped_index_and_fits_weights_that_help(tmp_path):
    from arcore.evaluate import evaluate_model, split_counts
    from arcore.infinigram.config import InfiniGramConfig
    from arcore.infinigram.stage import build_infinigram, load_infinigram
    from arcore.shards.reader import read_ids
    from arcore.tokenize.store import load_tokenizer

    tok_dir, shards = _shards(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    result = build_infinigram(InfiniGramConfig(), tok_dir, shards, out)
    tok = load_tokenizer(tok_dir)
    model = load_infinigram(out, tok)
    assert isinstance(model.index.sa, np.memmap) and isinstance(model.index.rev, np.memmap)
    train = read_ids(shards, "train", tok.sha256)
    assert model.index.size == train.size + np.count_nonzero(train == tok.eos_id)  # one <s> per document
    assert np.array_equal(np.sort(np.asarray(model.index.rev)), np.sort(np.concatenate(
        [train, np.full(np.count_nonzero(train == tok.eos_id), tok.bos_id)])))
    valid, counts = read_ids(shards, "valid", tok.sha256), split_counts(shards, "valid")
    fitted = evaluate_model(model, valid, counts, tok.unk_id)
    assert fitted.bits_per_byte == pytest.approx(result.metrics["valid_bits_per_byte"])
    assert 0 < result.metrics["valid_sparse_fraction"] < 1
    assert 0 < result.metrics["valid_argmax_agreement"] < 1
    import dataclasses

    for other in (0.05, 0.5, 0.95):  # the EM weights beat any single fixed weight on the data they were fit on
        fixed = dataclasses.replace(model, weights=np.full_like(model.weights, other))
        assert evaluate_model(fixed, valid, counts, tok.unk_id).bits_per_byte >= fitted.bits_per_byte
