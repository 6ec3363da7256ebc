"""Tokenizer training from a streamed, deterministic byte sample of the train split (issue 15).

Real ingest outputs (``build_ingest`` on text files in tmp_path), real Parquet, no mocks: the sample is
deterministic, never larger than ``sample_bytes``, spread over the whole split, independent of file
order and of row groups, and a split smaller than the budget trains exactly as without sampling.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest
from pydantic import ValidationError
from tokenizers import Tokenizer

from arcore.errors import InputError
from arcore.ingest import DOCUMENTS_FILE, IngestConfig, build_ingest
from arcore.tokenize import TokenizerConfig, build_tokenizer, train_tokenizer
from arcore.tokenize.build import PREVIEW_FILE
from arcore.tokenize.corpus import iter_texts
from arcore.tokenize.sample import TrainingSample, sample_fraction, split_size

WORDS = "the king queen of and to my lord sweet fair night day love death crown sword".split()


def paragraphs(n: int, offset: int = 0) -> list[str]:
    """n distinct paragraphs of 40-120 bytes built from a small vocabulary (deterministic)."""
    out = []
    for i in range(offset, offset + n):
        words = [WORDS[(i * 7 + j * 3) % len(WORDS)] for j in range(6 + i % 12)]
        out.append(f"{i}: " + " ".join(words))
    return out


def ingest(tmp_path: Path, name: str, texts: list[str], **kw) -> Path:
    src = tmp_path / f"{name}.txt"
    src.write_text("\n\n".join(texts) + "\n")
    out = tmp_path / name
    out.mkdir()
    build_ingest(IngestConfig(inputs=[str(src)], valid_fraction=0.1, test_fraction=0.0, **kw), out)
    return out


def test_split_size_counts_utf8_bytes_of_one_split(tmp_path):
    docs = ingest(tmp_path, "a", ["é" * 10, "plain"] + paragraphs(300))
    train = [t for t in iter_texts(docs, "train")]
    assert split_size(docs, "train") == (len(train), sum(len(t.encode("utf-8")) for t in train))


def test_sample_is_deterministic_capped_and_spread_over_the_split(tmp_path):
    docs = ingest(tmp_path, "a", paragraphs(4000))
    _, total = split_size(docs, "train")
    budget = total // 5
    first = TrainingSample(docs, "train", budget)
    texts = list(first)
    again = list(TrainingSample(docs, "train", budget))
    assert texts == again
    assert first.bytes == sum(len(t.encode()) for t in texts) and first.documents == len(texts)
    assert 0.85 * budget <= first.bytes <= budget  # capped, and about the budget on 3,600 documents
    assert not first.complete and first.split_bytes == total
    numbers = [int(t.split(":")[0]) for t in texts]
    quarters = [sum(1 for n in numbers if q * 1000 <= n < (q + 1) * 1000) for q in range(4)]
    assert min(quarters) > 0.6 * max(quarters)  # every part of the corpus contributes, not the first N bytes
    assert first.records() == {"train_documents": first.split_documents, "train_bytes": total,
                               "sample_documents": len(texts), "sample_bytes": first.bytes}


def test_sample_does_not_depend_on_file_order_or_row_groups(tmp_path):
    texts = paragraphs(2000)
    forward = ingest(tmp_path, "forward", texts)
    backward = ingest(tmp_path, "backward", texts[::-1], row_group_bytes=2000)
    assert pq.ParquetFile(backward / DOCUMENTS_FILE).num_row_groups > 20
    budget = split_size(forward, "train")[1] // 3
    a = list(TrainingSample(forward, "train", budget))
    b = list(TrainingSample(backward, "train", budget))
    # the same documents are selected; only the cap at the very end can differ with the order
    assert len(set(a) ^ set(b)) <= 0.05 * len(a)
    assert (sample_fraction("a"), sample_fraction("b")) == (0.3458865406570481, 0.7078308022752217)


def test_a_split_within_the_budget_trains_exactly_as_the_whole_split(tmp_path):
    """Byte-identical to training on every train text in file order, as before sampling existed, and
    equally so from a documents.parquet cut into many row groups."""
    texts = paragraphs(1500)
    one = ingest(tmp_path, "one", texts)
    many = ingest(tmp_path, "many", texts, row_group_bytes=4096)
    assert pq.ParquetFile(many / DOCUMENTS_FILE).num_row_groups > 10
    cfg = TokenizerConfig(vocab_size=400)
    whole = train_tokenizer(cfg, iter_texts(one, "train")).to_str()
    _, total = split_size(one, "train")
    exact = TrainingSample(one, "train", total)
    assert exact.complete and list(exact) == list(iter_texts(one, "train"))
    for docs in (one, many):
        out = docs.parent / f"tok-{docs.name}"
        out.mkdir()
        result = build_tokenizer(cfg, docs, out)
        assert (out / "tokenizer.json").read_text() == Tokenizer.from_str(whole).to_str(pretty=True)
        assert result.records["sample_bytes"] == result.records["train_bytes"] == total
        assert result.records["sample_documents"] == result.records["train_documents"]


def test_a_sampled_tokenizer_records_its_sample(tmp_path):
    docs = ingest(tmp_path, "a", paragraphs(3000))
    out = tmp_path / "tok"
    out.mkdir()
    _, total = split_size(docs, "train")
    result = build_tokenizer(TokenizerConfig(vocab_size=400, sample_bytes=total // 4), docs, out)
    r = result.records
    assert r["train_bytes"] == total and 0 < r["sample_bytes"] <= total // 4
    assert 0 < r["sample_documents"] < r["train_documents"]
    preview = (out / PREVIEW_FILE).read_text()
    assert f"trained on: {r['sample_documents']} of {r['train_documents']} train documents" in preview
    assert f"(sample_bytes={total // 4})" in preview
    assert set(result.metrics) == {"vocab_size", "tokens_per_word", "bytes_per_token", "unk_rate"}


def test_a_budget_too_small_for_any_document_names_the_setting(tmp_path):
    docs = ingest(tmp_path, "a", paragraphs(50))
    out = tmp_path / "tok"
    out.mkdir()
    with pytest.raises(InputError, match=r"tokenizer.sample_bytes=10 selected none of the train split's"):
        build_tokenizer(TokenizerConfig(sample_bytes=10), docs, out)


def test_sample_bytes_is_validated():
    with pytest.raises(ValidationError, match="sample_bytes"):
        TokenizerConfig(sample_bytes=0)
    assert TokenizerConfig().sample_bytes == 128 << 20
