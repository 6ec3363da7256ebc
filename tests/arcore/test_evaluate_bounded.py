"""Evaluation in bounded memory: per-shard streaming equals scoring the concatenation bit for bit, and the
``max_score_tokens`` sample is deterministic, made of whole documents and counted exactly. Real Parquet
shards built by the shards stage; toy models from test_evaluate and a uniform model."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from arcore.errors import InputError
from arcore.evaluate import (TextCounts, document_chunks, evaluate_model, evaluate_stream, iter_document_chunks,
                             split_counts)
from arcore.heldout import sample_documents
from tests.arcore.test_evaluate import EOS, BigramTable, BIGRAM
from tests.arcore.test_neural_data import _shards


def _documents(rng, n, vocab=4):
    docs = [np.append(rng.integers(2, vocab, size=rng.integers(0, 12)), EOS) for _ in range(n)]
    return np.concatenate(docs)


@pytest.mark.parametrize("chunk_tokens", [1, 5, 16, 1000])
def test_streamed_chunks_are_document_chunks_of_the_concatenation(chunk_tokens):
    rng = np.random.default_rng(chunk_tokens)
    ids = _documents(rng, 80)
    cuts = np.sort(rng.choice(np.arange(1, ids.size), size=9, replace=False))
    parts = np.split(ids.astype(np.uint16), cuts)  # parts end anywhere, even mid-document
    streamed = [c.tolist() for c in iter_document_chunks(parts, EOS, chunk_tokens)]
    assert streamed == [ids[a:b].tolist() for a, b in document_chunks(ids, EOS, chunk_tokens)]


def test_streamed_evaluation_equals_the_whole_array_bit_for_bit():
    rng = np.random.default_rng(0)
    ids = _documents(rng, 200)
    counts = TextCounts(source_bytes=3 * ids.size, words=ids.size, documents=int((ids == EOS).sum()))
    whole = evaluate_model(BigramTable(BIGRAM), ids, counts, unk_id=3, chunk_tokens=64)
    parts = np.array_split(ids, 13)
    assert evaluate_stream(BigramTable(BIGRAM), parts, counts, unk_id=3, chunk_tokens=64) == whole
    with pytest.raises(InputError, match="not </s>"):
        evaluate_stream(BigramTable(BIGRAM), [ids[:-1]], counts, unk_id=3)
    with pytest.raises(InputError, match="text counts say"):
        evaluate_stream(BigramTable(BIGRAM), parts, TextCounts(10, 10, 1), unk_id=3)


def test_sample_is_deterministic_whole_documents_within_budget_and_counted_exactly(tmp_path):
    _, shards = _shards(tmp_path, shard_tokens=256)
    total = split_counts(shards, "valid")
    first = sample_documents(shards, "valid", 250)
    assert first.sampled and 0 < first.tokens <= 250 and first.split_documents == total.documents
    again = sample_documents(shards, "valid", 250, verify=False)
    assert np.array_equal(first.ids, again.ids) and first.counts == again.counts
    rows = pq.ParquetDataset(sorted(shards.glob("valid/valid-*.parquet"))).read().to_pylist()
    docs = {tuple(r["ids"]): r for r in rows}
    ends = np.flatnonzero(first.ids == rows[0]["ids"][-1]) + 1
    sampled = [tuple(first.ids[a:b].tolist()) for a, b in zip(np.r_[0, ends[:-1]], ends)]
    assert len(sampled) == first.counts.documents and all(doc in docs for doc in sampled)  # whole documents
    assert first.counts.source_bytes == sum(docs[d]["source_bytes"] for d in sampled)
    assert first.counts.words == sum(docs[d]["words"] for d in sampled)
    order = [r["doc_id"] for r in rows]
    picked = [order.index(docs[d]["doc_id"]) for d in sampled]
    assert picked == sorted(picked) and picked[-1] > len(rows) // 2  # in split order, from all over it
    everything = sample_documents(shards, "valid", 10**9)
    assert not everything.sampled and everything.counts == total


def test_evaluate_stage_reports_the_sample(tmp_path):
    from arcore.compare import EvaluateConfig, build_evaluation
    from arcore.tokenize import load_tokenizer

    tok_dir, shards = _shards(tmp_path, shard_tokens=256)
    tok = load_tokenizer(tok_dir)
    model = _uniform(tok)
    for name, limit in (("all", None), ("sample", 250)):
        out_dir = tmp_path / name
        out_dir.mkdir()
        cfg = EvaluateConfig(max_score_tokens=limit, strategies=["greedy"], max_tokens=4)
        out = build_evaluation(cfg, tok, shards, {"uniform": model}, out_dir)
        evaluation = json.loads((out_dir / "evaluation.json").read_text())
        note = "deterministic sample" in (out_dir / "comparison.md").read_text()
        for split in ("valid", "test"):
            total = split_counts(shards, split)
            assert evaluation["uniform"][split]["perplexity_per_token"] == pytest.approx(tok.vocab_size)
            assert out.metrics[f"{split}_tokens_evaluated"] == evaluation["uniform"][split]["tokens"]
            if limit is None:
                assert out.metrics[f"{split}_tokens_evaluated"] == out.metrics[f"{split}_tokens_total"]
                assert evaluation["uniform"][split]["documents"] == total.documents and not note
            else:
                assert out.metrics[f"{split}_tokens_evaluated"] <= 250 < out.metrics[f"{split}_tokens_total"]
                assert evaluation["uniform"][split]["documents"] < total.documents and note


class _Uniform:
    def __init__(self, vocab_size, bos_id, eos_id):
        self.vocab_size, self.bos_id, self.eos_id = vocab_size, bos_id, eos_id

    def initial_state(self, batch_size):
        return np.zeros(batch_size)

    def next_logprobs(self, state):
        return np.full((len(state), self.vocab_size), -np.log(self.vocab_size))

    def advance(self, state, tokens):
        return state

    def select(self, state, rows):
        return state[rows]

    def score(self, ids):
        return np.full(len(ids), -np.log(self.vocab_size))


def _uniform(tok):
    return _Uniform(tok.vocab_size, tok.bos_id, tok.eos_id)
