"""Fixtures for the library tests."""

from __future__ import annotations

import pytest


@pytest.fixture
def one_torch_thread():
    """torch on one intra-op thread for the test (bit-identical comparisons, and no oversubscription
    of the 2-core CI machine), restored afterwards. Modules opt in with
    ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``; other library tests do not import torch."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_shards(tmp_path, *, train_documents: int = 200, shard_tokens: int = 512,
                tag_documents: bool = False):
    """A real tokenizer and real shards over random sentences of a 16-word vocabulary (300 x 60 x 60
    documents at most): ``(tokenizer_dir, shards_dir)`` under ``tmp_path``. ``tag_documents`` ends each
    document with its own word (``train7``), so no two documents are equal."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from arcore.shards import ShardsConfig, build_shards
    from arcore.tokenize import TokenizerConfig, build_tokenizer

    rng = np.random.default_rng(0)
    words = "the cat sat on a mat and ran to see his red house by the river".split()
    texts = {split: [" ".join(rng.choice(words, size=rng.integers(3, 40))) + (f" {split}{i}" if tag_documents else "")
                     for i in range(n)]
             for split, n in (("train", train_documents), ("valid", 60), ("test", 60))}
    rows = [(f"{s}-{i}", s, t) for s, ts in texts.items() for i, t in enumerate(ts)]
    (tmp_path / "ingest").mkdir()
    pq.write_table(pa.table({"doc_id": [r[0] for r in rows], "split": [r[1] for r in rows],
                             "text": pa.array([r[2] for r in rows], pa.large_string()),
                             "source": ["test"] * len(rows)}), tmp_path / "ingest" / "documents.parquet")
    for d in ("tok", "shards"):
        (tmp_path / d).mkdir()
    build_tokenizer(TokenizerConfig(vocab_size=300), tmp_path / "ingest", tmp_path / "tok")
    build_shards(ShardsConfig(shard_tokens=shard_tokens), tmp_path / "ingest", tmp_path / "tok", tmp_path / "shards")
    return tmp_path / "tok", tmp_path / "shards"
