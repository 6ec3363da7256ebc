"""The out-of-core n-gram passes: exact against the in-memory reference, and within their memory budget.

Reference comparison: ``corpus_count`` gives the tables of ``count_ngrams`` + ``NGramIndex`` (keys, counts,
the ``<s>`` rows) and the streamed Kneser-Ney the arrays of ``estimate_kneser_ney``, bit for bit, for
budgets small enough to force many pieces, many partitions and split heavy tokens. Mechanism: the streamed
bincount equals ``np.bincount`` bit for bit. The budget: a child process fits Kneser-Ney under a budget
several times smaller than the in-memory tables alone, and its peak RSS stays within 10% of the budget.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from arcore.ngram.adjust_counts import adjust_counts, counts_of_counts
from arcore.ngram.corpus_count import corpus_count, plan_partitions
from arcore.ngram.counts import count_ngrams
from arcore.ngram.diskarray import NpyFile, SegmentSums, find_sorted, gather, write_npy
from arcore.ngram.index import NGramIndex
from arcore.ngram.interpolate import ModelCollector, interpolate_kneser_ney
from arcore.ngram.kneser_ney import discounts_from_counts_of_counts, estimate_kneser_ney

BOS, EOS = 1, 2
FALLBACK = (0.5, 1.0, 1.5)


def random_docs(rng, vocab: int, docs: int, zipf: bool = False) -> list[np.ndarray]:
    out = []
    for _ in range(docs):
        length = int(rng.integers(0, 14))
        toks = (rng.zipf(1.3, length) % (vocab - 3) + 3) if zipf else rng.integers(3, vocab, length)
        out.append(np.concatenate([toks, [EOS]]).astype(np.uint16))
    return out


@pytest.mark.parametrize("seed", range(12))
def test_corpus_count_equals_count_ngrams(tmp_path, seed):
    rng = np.random.default_rng(seed)
    vocab, order = int(rng.integers(4, 60)), int(rng.integers(1, 6))
    docs = random_docs(rng, vocab, int(rng.integers(1, 120)), zipf=seed % 2 == 0)
    ids = np.concatenate(docs)
    ref = NGramIndex.from_counts(count_ngrams(ids, order, BOS, EOS, vocab_size=vocab))
    budget = [256, 2048, 1 << 20][seed % 3]  # 256 bytes: one-document pieces, a partition per token pair
    pieces = np.array_split(np.arange(len(docs)), 3)
    tables = corpus_count(lambda: [np.concatenate([docs[i] for i in p]) for p in pieces if len(p)], order, vocab,
                          BOS, EOS, tmp_path / "t", memory_budget_bytes=budget)
    np.testing.assert_array_equal(tables.unigram_counts(), ref.counts[0])
    for n in range(2, order + 1):
        np.testing.assert_array_equal(np.load(tables.path(n, "keys")), ref.keys[n - 1])
        np.testing.assert_array_equal(np.load(tables.path(n, "counts")), ref.counts[n - 1])
        lo, hi = tables.bos_rows[n - 1]
        np.testing.assert_array_equal(np.arange(lo, hi), np.flatnonzero(ref.first_word(n) == BOS))
    adjust_counts(tables, budget)
    for n in range(2, order + 1):
        np.testing.assert_array_equal(np.load(tables.path(n, "suffix")), ref.suffix_rows[n - 1])
    assert not (tmp_path / "t" / "windows").exists()  # the spilled windows are removed


@pytest.mark.parametrize("seed", range(10))
def test_streamed_kneser_ney_is_bit_identical(tmp_path, seed):
    rng = np.random.default_rng(100 + seed)
    vocab, order = int(rng.integers(5, 40)), int(rng.integers(1, 6))
    ids = np.concatenate(random_docs(rng, vocab, int(rng.integers(2, 150)), zipf=True))
    ref = estimate_kneser_ney(count_ngrams(ids, order, BOS, EOS, vocab_size=vocab), discount_fallback=FALLBACK)
    budget = [300, 4096, 1 << 20][seed % 3]
    tables = corpus_count(lambda: [ids], order, vocab, BOS, EOS, tmp_path / "t", memory_budget_bytes=budget)
    adjust_counts(tables, budget)
    coc = [counts_of_counts(tables, n, budget) for n in range(1, order + 1)]
    discounts = discounts_from_counts_of_counts(coc, FALLBACK)
    model = interpolate_kneser_ney(tables, discounts, ModelCollector("kneser-ney", order, vocab, BOS, EOS, None),
                                   tmp_path / "w", budget)
    for n in range(order):
        np.testing.assert_array_equal(model.keys[n], ref.keys[n])
        np.testing.assert_array_equal(model.logprob[n], ref.logprob[n])
        np.testing.assert_array_equal(model.logbackoff[n], ref.logbackoff[n])
    assert model.info == ref.info


def test_segment_sums_equal_bincount_bit_for_bit():
    rng = np.random.default_rng(7)
    rows = np.sort(rng.integers(0, 500, 20000))
    weights = rng.random(20000) * 1e3  # non-integers: summation order matters
    ref = np.bincount(rows, weights=weights, minlength=600)
    sums = SegmentSums(600)
    parts = [sums.add(rows[lo:lo + 777], weights[lo:lo + 777]) for lo in range(0, rows.size, 777)]
    got = np.concatenate(parts + [sums.finish()])
    assert got.tobytes() == ref.tobytes()


def test_blocked_gather_and_find(tmp_path):
    rng = np.random.default_rng(3)
    table = np.sort(rng.choice(10 ** 6, 5000, replace=False)).astype(np.int64)
    f = NpyFile(write_npy(tmp_path / "t.npy", table))
    idx = rng.integers(0, table.size, 3000)
    np.testing.assert_array_equal(gather(f, idx, 64), table[idx])
    np.testing.assert_array_equal(find_sorted(f, table[idx], 64), idx)
    assert np.load(tmp_path / "t.npy").tolist() == table.tolist()  # a valid .npy


def test_plan_partitions_splits_a_heavy_token_by_its_second_token():
    assert plan_partitions(np.array([3, 1, 4, 1, 5]), 5, vocab=10).tolist() == [0, 20, 40]
    # token 1 has 9 windows, followed by 0 (x4), 3 (x3), 7 (x2): split inside it; token 2 joins the last
    starts = plan_partitions(np.array([2, 9, 1]), 4, {1: (np.array([0, 3, 7]), np.array([4, 3, 2]))}, vocab=10)
    assert starts.tolist() == [0, 10, 13, 17]  # (1,0) | (1,3) | (1,7) and token 2


CHILD = textwrap.dedent("""
    import json, sys
    import numpy as np
    from pathlib import Path
    from arcore.ngram.fit import NGramConfig, fit_ngram_models

    def high_water_mb():  # VmHWM, not getrusage: ru_maxrss keeps the forking parent's peak across exec
        line = next(l for l in open("/proc/self/status") if l.startswith("VmHWM:"))
        return int(line.split()[1]) / 1024

    budget_mb, work, vocab = int(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[4])
    ids = np.load(sys.argv[3])
    before = high_water_mb()
    cfg = NGramConfig(order=5, models=["kneser-ney"], memory_budget_mb=budget_mb, count_tables=False)
    model = fit_ngram_models(cfg, ids, ids[:0], vocab, 1, 2, None, work)["kneser-ney"]
    print(json.dumps({"peak_mb": high_water_mb(), "before_mb": before,
                      "num_ngrams": model.num_ngrams()}))
""")


def test_fit_stays_within_its_memory_budget(tmp_path):
    budget_mb, vocab, n_tokens = 256, 30000, 8_000_000
    rng = np.random.default_rng(0)
    ids = (rng.zipf(1.2, n_tokens) % (vocab - 3) + 3).astype(np.uint16)
    ids[rng.random(n_tokens) < 0.05] = EOS  # documents of ~20 tokens
    ids[-1] = EOS
    np.save(tmp_path / "ids.npy", ids)
    proc = subprocess.run([sys.executable, "-c", CHILD, str(budget_mb), str(tmp_path / "work"),
                           str(tmp_path / "ids.npy"), str(vocab)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    # what the in-memory path holds at least: keys, counts, prefix and suffix rows, log p and backoff (8 bytes
    # each) for every n-gram, before any temporary
    in_memory_mb = sum(out["num_ngrams"]) * 6 * 8 / 2 ** 20
    assert in_memory_mb > 3 * budget_mb, out
    assert out["peak_mb"] <= 1.1 * budget_mb, out


def test_count_tables_do_not_depend_on_the_partitioning(tmp_path):
    rng = np.random.default_rng(11)
    ids = np.concatenate(random_docs(rng, 50, 400, zipf=True))
    digests = set()
    for budget in (512, 1 << 20):
        out = tmp_path / str(budget)
        tables = corpus_count(lambda: [ids], 4, 50, BOS, EOS, out / "t", memory_budget_bytes=budget,
                              parquet_dir=out / "pq")
        digests.add(tuple((out / "pq" / f"order{n}.parquet").read_bytes() for n in range(1, 5)))
    assert tables.partitions == 1 and len(digests) == 1  # the small budget made many partitions, same bytes


def _mapped_kb(directory) -> int:
    """Resident kB of this process's mappings of files under ``directory`` (from /proc/self/smaps)."""
    total, inside = 0, False
    for line in open("/proc/self/smaps"):
        head = line.split()
        if "-" in head[0] and len(head) >= 5 and not line.startswith(("Rss", "Pss")) and ":" not in head[0]:
            inside = len(head) >= 6 and head[5].startswith(str(directory))
        elif line.startswith("Rss:") and inside:
            total += int(head[1])
    return total


def _mapped_flags(directory) -> list[set[str]]:
    """The VmFlags of each of this process's mappings of files under ``directory`` (``rr``: MADV_RANDOM)."""
    flags, inside = [], False
    for line in open("/proc/self/smaps"):
        head = line.split()
        if "-" in head[0] and len(head) >= 5 and ":" not in head[0] and not line.startswith(("Rss", "Pss")):
            inside = len(head) >= 6 and head[5].startswith(str(directory))
        elif line.startswith("VmFlags:") and inside:
            flags.append(set(head[1:]))
    return flags


def test_scoring_a_large_mapped_model_gives_its_pages_back(tmp_path, monkeypatch):
    import arcore.ngram.backoff as backoff
    from arcore.ngram.fit import NGramConfig, fit_ngram_models

    rng = np.random.default_rng(5)
    ids = np.concatenate(random_docs(rng, 300, 4000, zipf=True))
    cfg = NGramConfig(order=4, models=["kneser-ney"], count_tables=False, discount_fallback=FALLBACK)
    model = fit_ngram_models(cfg, ids, ids[:0], 300, BOS, EOS, None, tmp_path / "w")["kneser-ney"]
    kept = model.score(ids)
    assert _mapped_kb(tmp_path / "w") > 0  # a small model keeps its pages: the fast path
    assert not any("rr" in f for f in _mapped_flags(tmp_path / "w"))  # and default readahead
    model.release_pages()
    assert _mapped_kb(tmp_path / "w") == 0
    monkeypatch.setattr(backoff, "_RELEASE_BYTES", 0)  # every mapped model counts as large
    released = model.score(ids)
    assert released.tobytes() == kept.tobytes()
    assert _mapped_kb(tmp_path / "w") == 0  # given back after the windows
    flags = _mapped_flags(tmp_path / "w")
    assert flags and all("rr" in f for f in flags)  # faults read single pages: no readahead, no folios
