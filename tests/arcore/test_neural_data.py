"""The neural data path: memory-mapped id files and their windows against word_language_model's own
batchify, the stage's token files from real Parquet shards, ``max_steps`` stop and resume."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from tests.arcore.conftest import tiny_shards

from arcore.errors import InputError
from arcore.neural import data as nd
from arcore.neural.checkpoint import CHECKPOINT_NAME, MODEL_WEIGHTS
from arcore.neural.data import TokenFile, TokenStreams, batchify, get_window, n_windows, scan_ids, write_token_file
from arcore.rnn.config import RNNConfig
from arcore.rnn.train import train_rnn

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def word_language_model_batchify(data: torch.Tensor, bsz: int) -> torch.Tensor:
    """PyTorch examples' word_language_model ``batchify``, verbatim but for the device."""
    nbatch = data.size(0) // bsz
    data = data.narrow(0, 0, nbatch * bsz)
    return data.view(bsz, -1).t().contiguous()


def word_language_model_get_batch(source: torch.Tensor, i: int, bptt: int):
    seq_len = min(bptt, len(source) - 1 - i)
    return source[i : i + seq_len], source[i + 1 : i + 1 + seq_len].view(-1)


def _id_file(tmp_path: Path, ids: np.ndarray, dtype: str = "uint16") -> TokenFile:
    return write_token_file(iter(np.array_split(ids, 7)), tmp_path / "ids.npy", dtype, len(ids))


@pytest.mark.parametrize("batch,bptt", [(7, 35), (4, 10), (1, 3), (16, 32)])
def test_memmapped_windows_equal_word_language_model_windows(tmp_path, batch, bptt):
    ids = np.random.default_rng(batch).integers(0, 4096, size=5003)
    file = _id_file(tmp_path, ids)
    assert isinstance(file.open(), np.memmap) and file.open().dtype == np.uint16 and len(file) == ids.size
    reference = word_language_model_batchify(torch.from_numpy(ids), batch)
    streams = TokenStreams(file, batch)
    assert streams.shape == tuple(reference.shape) and torch.equal(batchify(ids, batch), reference)
    assert n_windows(streams, bptt) == len(range(0, reference.size(0) - 1, bptt))
    for w, i in enumerate(range(0, reference.size(0) - 1, bptt)):
        x, y = streams.window(w, bptt)
        rx, ry = word_language_model_get_batch(reference, i, bptt)
        assert x.dtype == torch.int64 and x.is_contiguous() and y.is_contiguous()
        assert torch.equal(x, rx) and torch.equal(y.reshape(-1), ry)
        assert all(torch.equal(a, b) for a, b in zip((x, y), get_window(reference, w, bptt)))


def test_ranks_read_their_own_columns_and_in_memory_ids_give_the_same_windows(tmp_path):
    ids = np.arange(4000) % 1000
    file = _id_file(tmp_path, ids)
    whole = word_language_model_batchify(torch.from_numpy(ids), 2 * 3)
    for rank in (0, 1):
        for source in (file, ids, ids.astype(np.uint32)):
            streams = TokenStreams(source, 3, rank=rank, world_size=2)
            x, y = streams.window(5, 8)
            assert torch.equal(x, whole[40:48, rank * 3 : rank * 3 + 3])
            assert torch.equal(y, whole[41:49, rank * 3 : rank * 3 + 3])


def test_the_map_is_reopened_without_changing_a_window(tmp_path):
    ids = np.random.default_rng(3).integers(0, 60000, size=2 * (2 * nd.REOPEN_WINDOWS + 10))
    file = _id_file(tmp_path, ids)
    streams, reference = TokenStreams(file, 2), batchify(ids, 2)
    first_map = streams._layout
    windows = n_windows(streams, 1)
    assert windows > 2 * nd.REOPEN_WINDOWS
    for w in range(windows):
        x, y = streams.window(w, 1)
        assert torch.equal(x, reference[w : w + 1]) and torch.equal(y, reference[w + 1 : w + 2])
    assert streams._layout is not first_map  # reopened, so the pages read so far left the process


def test_scan_ids_digests_the_int64_ids_in_chunks(tmp_path, monkeypatch):
    ids = np.random.default_rng(0).integers(0, 300, size=10_001)
    monkeypatch.setattr(nd, "SCAN_CHUNK", 1000)  # many chunks; the digest must not depend on them
    for source in (ids, _id_file(tmp_path, ids)):
        digest = hashlib.sha256()
        assert scan_ids(source, digest) == (int(ids.min()), int(ids.max()))
        assert digest.hexdigest() == hashlib.sha256(ids.astype(np.int64).tobytes()).hexdigest()
    assert scan_ids(np.zeros(0, dtype=np.uint16)) == (0, -1)


def test_a_short_file_is_refused_and_too_little_text_names_the_setting(tmp_path):
    with pytest.raises(Exception, match="manifest says 10"):
        write_token_file([np.arange(5)], tmp_path / "short.npy", "uint16", 10)
    assert not (tmp_path / "short.npy").exists()
    with pytest.raises(InputError, match="lower rnn.eval_batch_size"):
        TokenStreams(_id_file(tmp_path, np.arange(50)), 32, setting="rnn.eval_batch_size")


# -- the stage's token files, from real shards --------------------------------------------------------------


def _shards(tmp_path: Path, shard_tokens: int = 512) -> tuple[Path, Path]:
    return tiny_shards(tmp_path, shard_tokens=shard_tokens, tag_documents=True)


def test_split_token_file_holds_the_shard_stream_and_is_reused(tmp_path):
    from arcore.shards import read_ids

    _, shards = _shards(tmp_path)
    assert len(list(shards.glob("train/train-*.parquet"))) > 2
    file = nd.read_split_tokens(shards, "train", tmp_path / "work")
    ids = read_ids(shards, "train")
    mapped = file.open()
    assert mapped.dtype == ids.dtype == np.uint16 and np.array_equal(mapped, ids)
    stamp = file.path.stat().st_mtime_ns
    assert nd.read_split_tokens(shards, "train", tmp_path / "work").path.stat().st_mtime_ns == stamp


def test_rnn_stage_trains_on_the_mapped_split_exactly_as_on_the_array(tmp_path):
    """The stage (memory-mapped train and valid) and train_rnn on read_ids arrays write equal weights."""
    from arcore.rnn.stage import build_rnn
    from arcore.shards import read_ids
    from arcore.tokenize import load_tokenizer

    tok_dir, shards = _shards(tmp_path)
    cfg = RNNConfig(emb_size=16, hidden_size=16, batch_size=4, bptt=8, epochs=1, eval_batch_size=4)
    out = build_rnn(cfg, tok_dir, shards, tmp_path / "stage")
    assert not (tmp_path / "stage" / ".data").exists()  # the token files are removed once trained
    tok = load_tokenizer(tok_dir)
    ref = train_rnn(cfg, read_ids(shards, "train"), read_ids(shards, "valid"), tok.vocab_size, tmp_path / "ref")
    a = torch.load(tmp_path / "stage" / "model" / MODEL_WEIGHTS, weights_only=True)
    b = torch.load(tmp_path / "ref" / "model" / MODEL_WEIGHTS, weights_only=True)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert out.metrics["best_valid_loss"] == ref.best_valid_loss
    assert out.metrics["valid_tokens_evaluated"] == read_ids(shards, "valid").size


def test_max_valid_tokens_validates_on_a_sample_of_whole_documents(tmp_path):
    from arcore.heldout import sample_documents
    from arcore.rnn.stage import build_rnn

    tok_dir, shards = _shards(tmp_path)
    cfg = RNNConfig(emb_size=16, hidden_size=16, batch_size=4, bptt=8, epochs=1, eval_batch_size=2,
                    max_valid_tokens=300)
    out = build_rnn(cfg, tok_dir, shards, tmp_path / "stage")
    sample = sample_documents(shards, "valid", 300)
    assert sample.sampled and out.metrics["valid_tokens_evaluated"] == sample.tokens <= 300


# -- max_steps -------------------------------------------------------------------------------------------------


def _cycle(n, vocab=10):
    rng = np.random.default_rng(1)
    ids = np.tile(rng.integers(0, vocab, size=7), n // 7 + 1)[:n]
    noise = rng.random(n) < 0.05
    ids[noise] = rng.integers(0, vocab, size=noise.sum())
    return ids


def test_max_steps_stops_at_that_step_and_a_relaunch_continues_from_it(tmp_path):
    cfg = RNNConfig(emb_size=16, hidden_size=16, batch_size=4, bptt=10, epochs=3, eval_batch_size=2, max_steps=17)
    bar = []
    first = train_rnn(cfg, _cycle(1200), _cycle(300), 10, tmp_path, progress=lambda d, t: bar.append((d, t)))
    assert first.steps == 17 and bar[-1] == (17, 17) and first.epochs == 1  # 30 windows an epoch: closed early
    assert first.train_tokens == 17 * 4 * 10 and (tmp_path / "model" / MODEL_WEIGHTS).is_file()
    again = train_rnn(cfg, _cycle(1200), _cycle(300), 10, tmp_path)
    assert again.resumed_from_step == again.steps == 17 and again.weights_sha256 == first.weights_sha256
    longer = train_rnn(cfg.model_copy(update={"max_steps": 40}), _cycle(1200), _cycle(300), 10, tmp_path)
    assert longer.resumed_from_step == 17 and longer.steps == 40 and longer.epochs == 2  # next epoch: 23 steps
    unlimited = train_rnn(cfg.model_copy(update={"max_steps": 0}), _cycle(1200), _cycle(300), 10, tmp_path / "all")
    assert unlimited.steps == 3 * 30


CONFIG = {"cell": "lstm", "emb_size": 12, "hidden_size": 12, "dropout": 0.2, "batch_size": 4, "bptt": 6,
          "epochs": 3, "checkpoint_every": 7, "optimizer": "adamw", "lr": 0.01, "eval_batch_size": 2,
          "max_steps": 75}


def _launch(args: list[str], out: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "arcore.neural.launch", *args, "--out", str(out)], cwd=ROOT,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _report(proc: subprocess.Popen) -> dict:
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    return json.loads(out.strip().splitlines()[-1])


def test_a_run_killed_before_max_steps_resumes_bit_identical(tmp_path):
    """uint16 ids memory-mapped by the launcher, a kill mid-epoch, max_steps in the second epoch."""
    ids = np.random.default_rng(0).integers(0, 20, size=1500).astype(np.uint16)
    np.save(tmp_path / "train.npy", ids)
    np.save(tmp_path / "valid.npy", ids[:200])
    (tmp_path / "cfg.json").write_text(json.dumps(CONFIG))
    args = ["--train", str(tmp_path / "train.npy"), "--valid", str(tmp_path / "valid.npy"), "--vocab-size", "20",
            "--config", str(tmp_path / "cfg.json"), "--threads", "1"]
    straight = _report(_launch(args, tmp_path / "straight"))
    assert straight["steps"] == 75  # 63 windows an epoch: the stop falls in the second
    out = tmp_path / "killed"
    victim = _launch([*args, "--step-delay", "0.03"], out)
    deadline = time.monotonic() + 90
    while not (out / CHECKPOINT_NAME).exists() or torch.load(out / CHECKPOINT_NAME, weights_only=True)[
            "position"]["step"] < 63:
        if victim.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"run ended before its checkpoint: {victim.communicate()[1][-500:]}")
        time.sleep(0.05)
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=30)
    resumed = _report(_launch(args, out))
    assert 63 <= resumed["resumed_from_step"] < 75 == resumed["steps"]
    assert resumed["weights_sha256"] == straight["weights_sha256"]
    assert resumed["best_valid_loss"] == straight["best_valid_loss"]
    for name in (CHECKPOINT_NAME, f"model/{MODEL_WEIGHTS}"):
        a = torch.load(tmp_path / "straight" / name, weights_only=True)
        b = torch.load(out / name, weights_only=True)
        a, b = (a["model"], b["model"]) if name == CHECKPOINT_NAME else (a, b)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name
