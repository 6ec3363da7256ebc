"""Shards stage: write -> read round trip, manifest counts, dtypes, resume after SIGKILL, refusals,
DuckDB interop, and the batchify / BPTT layout against word_language_model's own code.

Reference data: Tiny Shakespeare from ``../shared/corpora`` (tests that need it skip without it).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pydantic import ValidationError

from arcore.errors import InputError, StageError
from arcore.shards import (
    ShardMetadata,
    ShardsConfig,
    batchify,
    bptt_windows,
    build_shards,
    ids_dtype,
    iter_shard_ids,
    read_ids,
    read_manifest,
    split_stats,
)
from arcore.tokenize import TokenizerConfig, build_tokenizer, load_tokenizer, save_tokenizer

REPO = Path(__file__).resolve().parents[2]
CORPORA = REPO.parent / "shared" / "corpora"
SPLITS = ("train", "valid", "test")


def write_documents(ingest_dir: Path, splits: dict[str, list[str]]) -> Path:
    ingest_dir.mkdir(parents=True, exist_ok=True)
    rows = [(f"{split}-{i}", split, text) for split, texts in splits.items() for i, text in enumerate(texts)]
    pq.write_table(
        pa.table(
            {
                "doc_id": pa.array([r[0] for r in rows], pa.string()),
                "split": pa.array([r[1] for r in rows], pa.string()),
                "text": pa.array([r[2] for r in rows], pa.large_string()),
                "source": pa.array(["test"] * len(rows), pa.string()),
            }
        ),
        ingest_dir / "documents.parquet",
    )
    return ingest_dir


def make_tokenizer(root: Path, ingest: Path, **cfg) -> Path:
    out = root / "tok"
    out.mkdir(parents=True)
    build_tokenizer(TokenizerConfig(**cfg), ingest, out)
    return out


def fresh(path: Path) -> Path:
    path.mkdir(parents=True)
    return path


@pytest.fixture(scope="module")
def shakespeare(tmp_path_factory):
    """Paragraph documents of Tiny Shakespeare (plus awkward ones), split 80/10/10 by position."""
    path = CORPORA / "tinyshakespeare" / "input.txt"
    if not path.is_file():
        pytest.skip(f"{path} not available")
    paragraphs = [p for p in path.read_text(encoding="utf-8").split("\n\n") if p.strip()][:1500]
    paragraphs[3:3] = ["emoji 😀 and CJK 日本語 and e\u0301", "a literal </s> inside a document", "x"]
    n = len(paragraphs)
    splits = {"train": paragraphs[: n * 8 // 10], "valid": paragraphs[n * 8 // 10 : n * 9 // 10], "test": paragraphs[n * 9 // 10 :]}
    root = tmp_path_factory.mktemp("shakespeare")
    ingest = write_documents(root / "ingest", splits)
    tokenizer = make_tokenizer(root, ingest, vocab_size=600)
    return splits, ingest, tokenizer


SMALL = ShardsConfig(shard_tokens=4000, batch_documents=37)


# -- round trip and manifest -----------------------------------------------------------------------------


def test_write_then_read_equals_encode_and_manifest_counts(shakespeare, tmp_path):
    splits, ingest, tokenizer_dir = shakespeare
    out = fresh(tmp_path / "shards")
    result = build_shards(SMALL, ingest, tokenizer_dir, out)
    loaded = load_tokenizer(tokenizer_dir)
    for split in SPLITS:
        texts = splits[split]
        expected = [loaded.tokenizer.encode(t).ids + [loaded.eos_id] for t in texts]
        ids = read_ids(out, split, tokenizer_sha256=loaded.sha256)
        assert ids.dtype == np.uint16
        assert ids.tolist() == [i for doc in expected for i in doc]
        assert int(np.count_nonzero(ids == loaded.eos_id)) == len(texts), "eos only at document ends"

        m = read_manifest(out, split)
        assert m.complete and m.tokenizer_sha256 == loaded.sha256 and m.dtype == "uint16"
        assert m.documents == len(texts) == result.records[f"{split}_documents"]
        assert m.tokens == sum(map(len, expected))
        assert m.source_bytes == sum(len(t.encode("utf-8")) + 1 for t in texts)
        assert m.words == sum(len(t.split()) for t in texts)
        stats = split_stats(out, split)
        assert (stats.tokens, stats.documents, stats.source_bytes, stats.words) == (m.tokens, m.documents, m.source_bytes, m.words)

        first = 0
        for index, entry in enumerate(m.shards):
            assert entry.file == f"{split}/{split}-{index:05d}.parquet"
            parquet = pq.ParquetFile(out / entry.file)
            meta = ShardMetadata.from_schema(parquet.schema_arrow)
            assert (meta.split, meta.shard_index, meta.tokenizer_sha256, meta.dtype, meta.eos_id) == (split, index, loaded.sha256, "uint16", 1)
            assert meta.boundary == "eos_after_each_document"
            assert parquet.metadata.row_group(0).column(1).compression == "ZSTD"
            table = parquet.read()
            assert table.column("doc_id").to_pylist() == [f"{split}-{i}" for i in range(first, first + entry.documents)]
            assert entry.first_document == first and entry.tokens <= SMALL.shard_tokens
            first += entry.documents
        assert len(m.shards) > (1 if split == "train" else 0)
    assert result.metrics["train_bytes_per_token"] == pytest.approx(
        read_manifest(out, "train").source_bytes / read_manifest(out, "train").tokens
    )


def test_a_process_pool_mapper_writes_byte_identical_shards(shakespeare, tmp_path):
    """Every batch encoded in another process from the tokenizer's JSON (as a Dask worker does): same bytes."""
    from concurrent.futures import ProcessPoolExecutor

    _, ingest, tokenizer_dir = shakespeare
    here = build_shards(SMALL, ingest, tokenizer_dir, fresh(tmp_path / "here"))
    jobs = []
    with ProcessPoolExecutor(2) as pool:
        def mapper(fn, items):
            for job in pool.map(fn, items):
                jobs.append(job)
                yield job

        there = build_shards(SMALL, ingest, tokenizer_dir, fresh(tmp_path / "there"), mapper=mapper)
    assert len(jobs) == sum(-(-len(docs) // SMALL.batch_documents) for docs in shakespeare[0].values())
    def listing(root):
        return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())

    files = listing(tmp_path / "here")
    assert files == listing(tmp_path / "there") and len(files) > 6
    for name in files:
        assert (tmp_path / "here" / name).read_bytes() == (tmp_path / "there" / name).read_bytes(), name
    assert here.records == there.records


def test_shard_cutting_rule_worked_by_hand(tmp_path):
    """Word tokens, shard_tokens = 5. Document lengths incl. </s>: 2, 3, 1, 4, 6, 2.
    Shard 0: 2 + 3 = 5 (full). Shard 1: 1 + 4 = 5. The 6-token document exceeds a whole shard: shard 2
    holds it alone (oversized, counted). Shard 3: 2. A batch size of 2 documents must not matter."""
    docs = ["a", "a b", "", "a b c", "a b c a b", "c"]
    ingest = write_documents(tmp_path / "ingest", {"train": docs})
    tok = make_tokenizer(tmp_path, ingest, kind="word", vocab_size=50, min_frequency=1)
    for batch_documents in (2, 100):
        out = fresh(tmp_path / f"shards-{batch_documents}")
        build_shards(ShardsConfig(shard_tokens=5, batch_documents=batch_documents), ingest, tok, out)
        m = read_manifest(out, "train")
        assert [(s.documents, s.tokens, s.oversized_documents) for s in m.shards] == [(2, 5, 0), (2, 5, 0), (1, 6, 1), (1, 2, 0)]
        assert m.oversized_documents == 1 and m.words == 1 + 2 + 0 + 3 + 5 + 1
    assert [(out / s.file).read_bytes() for s in m.shards] == [
        (tmp_path / "shards-2" / s.file).read_bytes() for s in m.shards
    ]


def test_out_of_vocabulary_words_are_unk_and_counted(tmp_path):
    """Train "a b a", vocabulary {a, b}. Valid "a z b y y": z, y, y are <unk> (id 2) -> 3 unk of 6 tokens."""
    ingest = write_documents(tmp_path / "ingest", {"train": ["a b a"], "valid": ["a z b y y"]})
    tok = make_tokenizer(tmp_path, ingest, kind="word", vocab_size=50, min_frequency=1)
    out = fresh(tmp_path / "shards")
    result = build_shards(ShardsConfig(), ingest, tok, out)
    assert read_ids(out, "valid").tolist() == [4, 2, 5, 2, 2, 1]
    assert read_manifest(out, "valid").unk_tokens == 3 and result.metrics["valid_unk_rate"] == 0.5


def test_empty_splits_are_counted_and_an_empty_train_split_is_refused(tmp_path):
    ingest = write_documents(tmp_path / "ingest", {"train": ["some text here", "more text"]})
    tok = make_tokenizer(tmp_path, ingest, vocab_size=300)
    out = fresh(tmp_path / "shards")
    result = build_shards(ShardsConfig(), ingest, tok, out)
    assert result.records["valid_documents"] == 0 and read_manifest(out, "test").complete
    assert read_ids(out, "valid").size == 0 and split_stats(out, "test").tokens == 0
    ingest2 = write_documents(tmp_path / "ingest2", {"valid": ["only valid"]})
    with pytest.raises(InputError, match="train split has no documents"):
        build_shards(ShardsConfig(), ingest2, tok, fresh(tmp_path / "shards2"))


# -- dtypes --------------------------------------------------------------------------------------------


def test_id_dtype_boundaries():
    assert [ids_dtype(v) for v in (5, 65535, 65536, 65537, 2**32)] == ["uint16"] * 3 + ["uint32"] * 2


def test_vocabulary_over_65536_is_stored_as_uint32(tmp_path):
    """A real WordLevel tokenizer with 70,000 words: ids above 65,535 must survive the round trip."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    cfg = TokenizerConfig(kind="word", vocab_size=70_000)
    vocab = {tok: i for i, tok in enumerate(cfg.special_tokens)}
    vocab.update({f"w{i}": i for i in range(4, 70_000)})
    tokenizer = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer.add_special_tokens(list(cfg.special_tokens))
    tok = fresh(tmp_path / "tok")
    save_tokenizer(tokenizer, cfg, tok)
    ingest = write_documents(tmp_path / "ingest", {"train": ["w4 w65535 w65536", "w69999 nope"]})
    out = fresh(tmp_path / "shards")
    build_shards(ShardsConfig(), ingest, tok, out)
    ids = read_ids(out, "train")
    assert ids.dtype == np.uint32 and ids.tolist() == [4, 65535, 65536, 1, 69999, 2, 1]
    assert pq.read_schema(out / "train" / "train-00000.parquet").field("ids").type == pa.list_(pa.field("item", pa.uint32(), nullable=False))


# -- resume, refusal -----------------------------------------------------------------------------------

_CHILD = """
import sys, time
from pathlib import Path
from arcore.shards import ShardsConfig, build_shards
ingest, tok, out = map(Path, sys.argv[1:4])
build_shards(ShardsConfig(shard_tokens=4000, batch_documents=5), ingest, tok, out, progress=lambda d, t: time.sleep(0.03))
"""


def test_resume_after_sigkill_is_byte_identical(shakespeare, tmp_path):
    _, ingest, tok = shakespeare
    cfg = ShardsConfig(shard_tokens=4000, batch_documents=5)
    reference = fresh(tmp_path / "reference")
    build_shards(cfg, ingest, tok, reference)
    n_train = len(read_manifest(reference, "train").shards)

    out = fresh(tmp_path / "killed")
    env = {**os.environ, "PYTHONPATH": str(REPO), "TOKENIZERS_PARALLELISM": "false"}
    child = subprocess.Popen([sys.executable, "-c", _CHILD, str(ingest), str(tok), str(out)], env=env)
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline and child.poll() is None:
            m = read_manifest(out, "train") if (out / "train.manifest.json").exists() else None
            if m is not None and len(m.shards) >= 3:
                break
            time.sleep(0.01)
        assert child.poll() is None, "the child finished before it could be killed"
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.wait()
    partial = read_manifest(out, "train")
    assert not partial.complete and 3 <= len(partial.shards) < n_train
    kept = {s.file: (out / s.file).stat().st_mtime_ns for s in partial.shards}

    result = build_shards(cfg, ingest, tok, out)
    assert result.records["train_resumed_shards"] == len(partial.shards)
    assert {f: (out / f).stat().st_mtime_ns for f in kept} == kept, "finished shards are not rewritten"
    names = sorted(str(p.relative_to(reference)) for p in reference.rglob("*") if p.is_file())
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()) == names  # no temp file left
    assert all((out / n).read_bytes() == (reference / n).read_bytes() for n in names)


def test_shards_from_another_tokenizer_or_with_a_changed_checksum_are_refused(shakespeare, tmp_path):
    splits, ingest, tok = shakespeare
    out = fresh(tmp_path / "shards")
    build_shards(SMALL, ingest, tok, out)
    other = make_tokenizer(tmp_path / "other", ingest, vocab_size=700)
    other_digest = load_tokenizer(other).sha256

    with pytest.raises(StageError, match="written by tokenizer") as refused:
        build_shards(SMALL, ingest, other, out)
    assert "\n" not in str(refused.value)
    with pytest.raises(StageError, match="written by tokenizer"):
        read_ids(out, "train", tokenizer_sha256=other_digest)
    with pytest.raises(StageError, match="shard_tokens=4000"):
        build_shards(ShardsConfig(shard_tokens=5000), ingest, tok, out)
    changed = write_documents(tmp_path / "changed", {**splits, "test": splits["test"][:-1]})
    with pytest.raises(StageError, match="documents_sha256"):
        build_shards(SMALL, changed, tok, out)

    shard = out / "train" / "train-00001.parquet"
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF
    shard.write_bytes(bytes(data))
    with pytest.raises(StageError, match="train-00001.parquet has sha256") as corrupted:
        read_ids(out, "train")
    assert "\n" not in str(corrupted.value)
    with pytest.raises(StageError, match="train-00001.parquet has sha256"):
        build_shards(SMALL, ingest, tok, out)
    shard.unlink()
    with pytest.raises(StageError, match="missing"):
        read_ids(out, "train")


# -- interop -------------------------------------------------------------------------------------------


def test_duckdb_reads_the_shards_and_counts_the_same_tokens(shakespeare, tmp_path):
    duckdb = pytest.importorskip("duckdb")
    _, ingest, tok = shakespeare
    out = fresh(tmp_path / "shards")
    build_shards(SMALL, ingest, tok, out)
    m = read_manifest(out, "train")
    [(tokens, documents, source_bytes, words, max_id)] = duckdb.sql(
        f"SELECT sum(len(ids)), count(*), sum(source_bytes), sum(words), max(list_max(ids)) "
        f"FROM read_parquet('{out}/train/*.parquet')"
    ).fetchall()
    assert (tokens, documents, source_bytes, words) == (m.tokens, m.documents, m.source_bytes, m.words)
    assert max_id < m.vocab_size


def test_arrow_and_pandas_open_each_split_directory_whole(shakespeare, tmp_path):
    """One directory per split holding only its shards: ``pq.read_table(<shards>/train)`` and pandas read
    every shard of the split in order, with the manifest's counts (the manifests sit outside them)."""
    import pandas as pd

    _, ingest, tok = shakespeare
    out = fresh(tmp_path / "shards")
    build_shards(SMALL, ingest, tok, out)
    for split in SPLITS:
        m = read_manifest(out, split)
        table = pq.read_table(out / split)
        assert table.num_rows == m.documents
        assert table.column("doc_id").to_pylist() == [f"{split}-{i}" for i in range(m.documents)]
        ids = np.concatenate([np.asarray(a, dtype=np.int64) for a in table.column("ids").to_pylist()])
        assert ids.tolist() == read_ids(out, split).tolist()
        assert int(pd.read_parquet(out / split)["words"].sum()) == m.words


def test_iter_shard_ids_are_zero_copy_views(shakespeare, tmp_path):
    _, ingest, tok = shakespeare
    out = fresh(tmp_path / "shards")
    build_shards(SMALL, ingest, tok, out)
    parts = list(iter_shard_ids(out, "train"))
    assert len(parts) == len(read_manifest(out, "train").shards)
    assert all(not p.flags.writeable and not p.flags.owndata for p in parts), "views over Arrow buffers"
    assert np.array_equal(np.concatenate(parts), read_ids(out, "train"))


# -- batchify and BPTT ---------------------------------------------------------------------------------


def torch_batchify(data, bsz):
    """word_language_model/main.py, verbatim apart from the device."""
    nbatch = data.size(0) // bsz
    data = data.narrow(0, 0, nbatch * bsz)
    data = data.view(bsz, -1).t().contiguous()
    return data


def torch_get_batch(source, i, bptt):
    seq_len = min(bptt, len(source) - 1 - i)
    data = source[i : i + seq_len]
    target = source[i + 1 : i + 1 + seq_len].view(-1)
    return data, target


def test_batchify_hand_worked_and_equal_to_word_language_model():
    """ids 0..9, batch 3: T = 3, id 9 dropped; rows are the 3 contiguous streams.
    Ours (batch, time): [[0,1,2],[3,4,5],[6,7,8]]; torch's (time, batch) is its transpose."""
    rows = batchify(np.arange(10, dtype=np.uint16), 3)
    assert rows.tolist() == [[0, 1, 2], [3, 4, 5], [6, 7, 8]]
    assert rows.base is not None, "a view, not a copy"
    torch = pytest.importorskip("torch")
    ids = np.random.default_rng(0).integers(0, 500, size=1003).astype(np.int64)
    reference = torch_batchify(torch.from_numpy(ids), 7)
    ours = batchify(ids, 7)
    assert np.array_equal(ours, reference.numpy().T)
    windows = list(bptt_windows(ours, 35))
    starts = range(0, reference.size(0) - 1, 35)
    assert len(windows) == len(starts)
    for (x, y), i in zip(windows, starts):
        data, target = torch_get_batch(reference, i, 35)
        assert np.array_equal(x, data.numpy().T)
        assert np.array_equal(y.T.reshape(-1), target.numpy()), "targets flatten in torch's (time, batch) order"
    with pytest.raises(InputError, match="lower the batch size"):
        batchify(np.arange(5), 3)


def test_bptt_windows_hand_worked_and_seeded():
    rows = np.arange(5).reshape(1, 5)
    assert [(x.tolist(), y.tolist()) for x, y in bptt_windows(rows, 2)] == [([[0, 1]], [[1, 2]]), ([[2, 3]], [[3, 4]])]
    rows = batchify(np.arange(4000), 4)
    first = [x.shape[1] for x, _ in bptt_windows(rows, 20, seed=1)]
    assert first == [x.shape[1] for x, _ in bptt_windows(rows, 20, seed=1)]
    assert first != [x.shape[1] for x, _ in bptt_windows(rows, 20, seed=2)]
    assert len(set(first)) > 3 and sum(first) == rows.shape[1] - 1, "variable windows tile the stream"
    xs = np.concatenate([x for x, _ in bptt_windows(rows, 20, seed=1)], axis=1)
    assert np.array_equal(xs, rows[:, :-1])


def test_config_refuses_bad_values():
    for values, key in (
        ({"shard_tokens": 0}, "shard_tokens"),
        ({"batch_documents": 0}, "batch_documents"),
        ({"compression": "gzip"}, "compression"),
        ({"compression_level": 30}, "compression_level"),
        ({"shard_size": 10}, "shard_size"),
    ):
        with pytest.raises(ValidationError, match=key):
            ShardsConfig(**values)
