"""The ngram stage's ``max_valid_tokens``: valid figures on a deterministic sample of whole documents."""

from __future__ import annotations

from tests.arcore.conftest import tiny_shards

from arcore.evaluate import evaluate_model
from arcore.heldout import sample_documents
from arcore.ngram.fit import NGramConfig, load_ngram_models
from arcore.ngram.stage import build_ngram
from arcore.shards.reader import read_ids
from arcore.tokenize.store import load_tokenizer


def test_max_valid_tokens_scores_a_sample_of_whole_documents_and_says_so(tmp_path):
    tok_dir, shards = tiny_shards(tmp_path, shard_tokens=512, tag_documents=True)
    total = read_ids(shards, "valid").size
    whole = build_ngram(NGramConfig(order=3, models=["kneser-ney", "interpolated"], arpa="none",
                                    count_tables=False), tok_dir, shards, tmp_path / "whole")
    assert whole.records["valid_tokens_evaluated"] == whole.records["valid_tokens_total"] == total
    cfg = NGramConfig(order=3, models=["kneser-ney", "interpolated"], arpa="none", count_tables=False,
                      max_valid_tokens=300)
    out = build_ngram(cfg, tok_dir, shards, tmp_path / "sampled")
    sample = sample_documents(shards, "valid", 300)
    assert sample.sampled and out.records["valid_tokens_evaluated"] == sample.tokens <= 300
    assert out.records["valid_tokens_total"] == total
    kn = load_ngram_models(tmp_path / "sampled")["kneser-ney"]
    ev = evaluate_model(kn, sample.ids, sample.counts, load_tokenizer(tok_dir).unk_id)
    assert out.metrics["kneser-ney.valid_perplexity"] == ev.perplexity_per_token  # the sample's own figures
    assert out.metrics["kneser-ney.valid_perplexity"] != whole.metrics["kneser-ney.valid_perplexity"]
    # the counts do not depend on the valid split: Kneser-Ney is the same model either way
    assert load_ngram_models(tmp_path / "whole")["kneser-ney"].num_ngrams() == kn.num_ngrams()
