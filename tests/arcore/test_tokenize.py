"""Tokenizer stage: the lecture's BPE example by hand, exact byte-level round trips, every kind, config.

Reference data: Tiny Shakespeare and WikiText-2 from ``../shared/corpora`` (tests skip without them).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pydantic import ValidationError
from tokenizers import Tokenizer

from arcore.errors import InputError, StageError
from arcore.tokenize import (
    TokenizerConfig,
    build_tokenizer,
    count_words,
    load_tokenizer,
    train_tokenizer,
)
from arcore.tokenize.build import PREVIEW_FILE
from arcore.tokenize.store import DIGEST_FILE, TOKENIZER_FILE

CORPORA = Path(__file__).resolve().parents[2].parent / "shared" / "corpora"
KINDS = ("bpe", "wordpiece", "unigram", "char", "word")


def shakespeare_lines() -> list[str]:
    path = CORPORA / "tinyshakespeare" / "input.txt"
    if not path.is_file():
        pytest.skip(f"{path} not available")
    return path.read_text(encoding="utf-8").split("\n")


def write_documents(ingest_dir: Path, splits: dict[str, list[str]]) -> Path:
    """A ``documents.parquet`` in ingest's schema, documents in the given split order."""
    ingest_dir.mkdir(parents=True, exist_ok=True)
    rows = [(f"{split}-{i}", split, text) for split, texts in splits.items() for i, text in enumerate(texts)]
    table = pa.table(
        {
            "doc_id": pa.array([r[0] for r in rows], pa.string()),
            "split": pa.array([r[1] for r in rows], pa.string()),
            "text": pa.array([r[2] for r in rows], pa.large_string()),
            "source": pa.array(["test"] * len(rows), pa.string()),
        }
    )
    pq.write_table(table, ingest_dir / "documents.parquet")
    return ingest_dir


def merges(tokenizer: Tokenizer) -> list[tuple[str, str]]:
    return [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in json.loads(tokenizer.to_str())["model"]["merges"]]


# -- 1. hand-worked ------------------------------------------------------------------------------------


def test_lecture_bpe_example_merges_in_hand_worked_order():
    """Word counts (hug,10) (pug,5) (pun,12) (bun,4) (hugs,5); symbols start as single letters.

    Pair counts before merge 1: h u 15, u g 20, p u 17, u n 16, b u 4, g s 5   -> merge u+g (20)
      words: h ug (10), p ug (5), p u n (12), b u n (4), h ug s (5)
    before merge 2: h ug 15, p ug 5, p u 12, u n 16, b u 4, ug s 5             -> merge u+n (16)
      words: h ug, p ug, p un, b un, h ug s
    before merge 3: h ug 15, p ug 5, p un 12, b un 4, ug s 5                   -> merge h+ug (15)
      words: hug, p ug, p un, b un, hug s
    before merge 4: p ug 5, p un 12, b un 4, hug s 5                           -> merge p+un (12)
    before merge 5: p ug 5, b un 4, hug s 5: a TIE between (p, ug) and (hug, s).
      HF's trainer pops the max of (count, then the smaller pair of ids): ids are specials, then the
      alphabet in code point order, then merged tokens in merge order, so p (alphabet) < hug (merge 3)
      and (p, ug) wins                                                          -> merge p+ug (5)
    before merge 6: b un 4, hug s 5                                             -> merge hug+s (5)
    before merge 7: b un 4                                                      -> merge b+un (4)
    Then every word is one token and no pair is left: training stops at 260 + 7 = 267 entries.
    """
    texts = ["hug"] * 10 + ["pug"] * 5 + ["pun"] * 12 + ["bun"] * 4 + ["hugs"] * 5
    tokenizer = train_tokenizer(TokenizerConfig(kind="bpe", vocab_size=400, min_frequency=1), texts)
    assert merges(tokenizer)[0] == ("u", "g")
    assert merges(tokenizer) == [("u", "g"), ("u", "n"), ("h", "ug"), ("p", "un"), ("p", "ug"), ("hug", "s"), ("b", "un")]
    assert tokenizer.get_vocab_size() == 256 + 4 + 7
    assert [tokenizer.encode(w).tokens for w in ("hugs", "bug")] == [["hugs"], ["b", "ug"]]


def test_bpe_ties_go_to_the_smaller_pair_of_ids_whatever_the_input_order():
    """(c,d) and (a,b) both occur 3 times; a < c in the alphabet's id order, so a+b is merged first,
    even when the c-d words come first in the data. With min_frequency 3 nothing else is merged."""
    for texts in (["cd"] * 3 + ["ab"] * 3, ["ab"] * 3 + ["cd"] * 3):
        tokenizer = train_tokenizer(TokenizerConfig(vocab_size=400, min_frequency=3), texts)
        assert merges(tokenizer) == [("a", "b"), ("c", "d")]


def test_metrics_on_valid_worked_by_hand(tmp_path):
    """Word-level, train "a b a c" / "a b": vocab = specials + a, b, c. Valid "a b zz zz" and "c q":
    6 words, 6 tokens (zz, zz, q -> <unk>: 3), bytes 9 + 3 = 12.
    tokens_per_word = 6/6 = 1, bytes_per_token = 12/6 = 2, unk_rate = 3/6 = 0.5."""
    ingest = write_documents(tmp_path / "ingest", {"train": ["a b a c", "a b"], "valid": ["a b zz zz", "c q"]})
    out = tmp_path / "tok"
    out.mkdir()
    result = build_tokenizer(TokenizerConfig(kind="word", vocab_size=100, min_frequency=1), ingest, out)
    assert result.metrics == {"vocab_size": 7.0, "tokens_per_word": 1.0, "bytes_per_token": 2.0, "unk_rate": 0.5}
    assert result.records["valid_unk_tokens"] == 3 and result.records["valid_words"] == 6
    assert count_words(" to  be\nor\t") == 3


# -- 2. round trips ------------------------------------------------------------------------------------

TRICKY_LINES = [
    "plain ASCII, with  two spaces and a trailing space ",
    "   leading spaces and\ttabs\t",
    "emoji 😀 👩‍👩‍👧‍👦 family (ZWJ), 👍🏽 skin tone, 🇫🇷 flag",
    "CJK 日本語のテキスト 中文 한국어",
    "combining marks: e\u0301 (NFD) vs \u00e9 (NFC), a\u0308\u0304, Z\u0351\u036b\u0343\u036a\u0302\u036b",
    "control characters \x00 \x01 \x07 \x1b[31m red \x1b[0m \x7f \r\n and CRLF\r\n",
    "RTL עברית العربية and \u200f marks \u200b zero width \ufeff BOM",
    "literal special tokens <s> </s> <unk> <pad> inside text",
    "math 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 ∑ ∫ √ and private use \ue000 and noncharacter \uffff",
    "",
    "\n\n\n",
]


def test_byte_level_bpe_round_trips_every_tricky_line():
    tokenizer = train_tokenizer(TokenizerConfig(vocab_size=300, min_frequency=1), TRICKY_LINES[:4] * 3)
    for line in TRICKY_LINES:
        ids = tokenizer.encode(line).ids
        assert tokenizer.token_to_id("</s>") not in ids, "literal </s> must be encoded as text"
        assert tokenizer.decode(ids) == line


def test_byte_level_bpe_round_trips_every_tiny_shakespeare_line(tmp_path):
    lines = shakespeare_lines()
    ingest = write_documents(tmp_path / "ingest", {"train": lines[:3000], "valid": lines[3000:3100]})
    out = tmp_path / "tok"
    out.mkdir()
    build_tokenizer(TokenizerConfig(vocab_size=1000), ingest, out)
    loaded = load_tokenizer(out)  # through the saved file, as downstream stages see it
    batch = lines + TRICKY_LINES
    decoded = loaded.tokenizer.decode_batch([e.ids for e in loaded.tokenizer.encode_batch(batch)])
    mismatches = [(a, b) for a, b in zip(batch, decoded) if a != b]
    assert mismatches == []


# -- 3. every kind -------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_trains_saves_loads_and_encodes(tmp_path, kind):
    lines = shakespeare_lines()
    train = ["\n".join(lines[i : i + 10]) for i in range(0, 1500, 10)]  # multi-line documents
    valid = lines[1500:1600]
    ingest = write_documents(tmp_path / "ingest", {"train": train, "valid": valid})
    out = tmp_path / "tok"
    out.mkdir()
    cfg = TokenizerConfig(kind=kind, vocab_size=400, min_frequency=1)
    result = build_tokenizer(cfg, ingest, out)

    data = (out / TOKENIZER_FILE).read_bytes()
    assert (out / DIGEST_FILE).read_text().strip() == hashlib.sha256(data).hexdigest()
    assert set(result.artifacts) <= {p.name for p in out.iterdir()}
    assert "special tokens: bos='<s>':0, eos='</s>':1, unk='<unk>':2, pad='<pad>':3" in (out / PREVIEW_FILE).read_text()

    loaded = load_tokenizer(out)
    assert (loaded.bos_id, loaded.eos_id, loaded.unk_id, loaded.pad_id) == (0, 1, 2, 3)
    assert loaded.vocab_size == result.metrics["vocab_size"] <= 400
    reread = Tokenizer.from_file(str(out / TOKENIZER_FILE))
    text = "First Citizen:\nBefore we proceed any further, hear me speak."
    ids = loaded.tokenizer.encode(text).ids
    assert ids == reread.encode(text).ids and 0 < len(ids) and max(ids) < loaded.vocab_size
    assert 0 < result.metrics["tokens_per_word"] and 0 < result.metrics["bytes_per_token"]
    if kind == "char":  # every character of the text occurs in train: exact round trip, 1 token per char
        assert loaded.tokenizer.decode(ids) == text and len(ids) == len(text)
    if kind == "word":  # out-of-vocabulary words become <unk>, which decode skips
        vocab = loaded.tokenizer.get_vocab()
        assert loaded.tokenizer.decode(ids) == " ".join(w for w in text.split() if w in vocab)
        assert len(ids) == len(text.split())
    if kind == "bpe":
        assert result.metrics["unk_rate"] == 0.0


@pytest.mark.parametrize("kind", [k for k in KINDS if k != "wordpiece"])
def test_training_is_deterministic(kind):
    """Same texts, same bytes (so the digest identifies the tokenizer). WordPiece is excluded: HF
    numbers its ``##`` symbols in hash-map order and its vocabulary can differ between runs."""
    lines = shakespeare_lines()[:800]
    cfg = TokenizerConfig(kind=kind, vocab_size=350, min_frequency=1)
    assert train_tokenizer(cfg, lines).to_str() == train_tokenizer(cfg, lines).to_str()


def test_pretrained_tokenizer_fast_loads_the_file(tmp_path):
    transformers = pytest.importorskip("transformers")
    ingest = write_documents(tmp_path / "ingest", {"train": TRICKY_LINES * 2, "valid": TRICKY_LINES[:2]})
    out = tmp_path / "tok"
    out.mkdir()
    build_tokenizer(TokenizerConfig(vocab_size=300, min_frequency=1), ingest, out)
    fast = transformers.PreTrainedTokenizerFast(tokenizer_file=str(out / TOKENIZER_FILE))
    own = load_tokenizer(out).tokenizer
    line = TRICKY_LINES[2]
    assert fast(line)["input_ids"] == own.encode(line).ids
    assert fast.decode(fast(line)["input_ids"]) == line
    assert fast.convert_tokens_to_ids(["<s>", "</s>", "<unk>", "<pad>"]) == [0, 1, 2, 3]


@pytest.mark.parametrize("kind", ["bpe", "word"])
def test_auto_tokenizer_loads_the_directory_with_special_tokens_and_pads(tmp_path, kind):
    """The stage's directory is a ``save_pretrained`` directory: AutoTokenizer sets bos/eos/unk/pad from
    tokenizer_config.json, so a batch pads with <pad> (id 3) and the attention mask marks it."""
    transformers = pytest.importorskip("transformers")
    ingest = write_documents(tmp_path / "ingest", {"train": TRICKY_LINES * 2, "valid": TRICKY_LINES[:2]})
    out = tmp_path / "tok"
    out.mkdir()
    result = build_tokenizer(TokenizerConfig(kind=kind, vocab_size=300, min_frequency=1), ingest, out)
    assert {"tokenizer_config.json", "special_tokens_map.json"} <= set(result.artifacts)
    auto = transformers.AutoTokenizer.from_pretrained(str(out))
    assert isinstance(auto, transformers.PreTrainedTokenizerFast)
    assert (auto.bos_token, auto.eos_token, auto.unk_token, auto.pad_token) == ("<s>", "</s>", "<unk>", "<pad>")
    assert (auto.bos_token_id, auto.eos_token_id, auto.unk_token_id, auto.pad_token_id) == (0, 1, 2, 3)
    own = load_tokenizer(out).tokenizer
    short, long = TRICKY_LINES[0], TRICKY_LINES[0] + " " + TRICKY_LINES[1]
    batch = auto([short, long], padding=True)
    n_short, n_long = len(own.encode(short).ids), len(own.encode(long).ids)
    assert n_short < n_long
    assert batch["input_ids"][0] == own.encode(short).ids + [3] * (n_long - n_short)
    assert batch["attention_mask"][0] == [1] * n_short + [0] * (n_long - n_short)
    assert batch["input_ids"][1] == own.encode(long).ids


# -- bad input -----------------------------------------------------------------------------------------


def test_wikitext_literal_unk_keeps_special_ids_and_maps_to_unk():
    """WikiText writes OOV words as the literal ``<unk>``; HF's WordLevelTrainer would number it twice."""
    texts = ["the <unk> sat on the <unk> mat </s>", "the cat <s> sat"]
    for kind in ("word", "char"):
        tokenizer = train_tokenizer(TokenizerConfig(kind=kind, vocab_size=100, min_frequency=1), texts)
        vocab = tokenizer.get_vocab()
        assert [vocab[t] for t in ("<s>", "</s>", "<unk>", "<pad>")] == [0, 1, 2, 3]
        assert sorted(vocab.values()) == list(range(len(vocab))), "ids must be dense"
    word = train_tokenizer(TokenizerConfig(kind="word", vocab_size=100, min_frequency=1), texts)
    assert word.encode("the <unk> dog").ids == [word.token_to_id("the"), 2, 2]


def test_empty_train_split_is_refused(tmp_path):
    with pytest.raises(InputError, match="train split has no documents"):
        train_tokenizer(TokenizerConfig(), [])
    ingest = write_documents(tmp_path / "ingest", {"valid": ["only valid text"]})
    out = tmp_path / "tok"
    out.mkdir()
    with pytest.raises(InputError, match="train split has no documents"):
        build_tokenizer(TokenizerConfig(), ingest, out)


def test_vocab_smaller_than_alphabet_is_refused():
    with pytest.raises(InputError, match="smaller than the train split's alphabet"):
        train_tokenizer(TokenizerConfig(kind="wordpiece", vocab_size=10, min_frequency=1), ["abcdefghijklmnop"])


def test_missing_ingest_and_edited_tokenizer_are_stage_errors(tmp_path):
    out = tmp_path / "tok"
    out.mkdir()
    with pytest.raises(StageError, match="run the ingest stage first"):
        build_tokenizer(TokenizerConfig(), tmp_path / "nowhere", out)
    ingest = write_documents(tmp_path / "ingest", {"train": ["some text"] * 3})
    build_tokenizer(TokenizerConfig(vocab_size=300), ingest, out)
    path = out / TOKENIZER_FILE
    path.write_text(path.read_text().replace('"<pad>"', '"<PAD>"'))
    with pytest.raises(StageError, match="changed after training"):
        load_tokenizer(out)


@pytest.mark.parametrize(
    "values, key",
    [
        ({"kind": "bytes"}, "kind"),
        ({"vocab_size": 0}, "vocab_size"),
        ({"vocab_size": 2**33}, "vocab_size"),
        ({"min_frequency": 0}, "min_frequency"),
        ({"normalization": "nfd"}, "normalization"),
        ({"vocab_sise": 100}, "vocab_sise"),
        ({"eos_token": ""}, "eos_token"),
    ],
)
def test_config_refuses_bad_values_naming_the_key(values, key):
    with pytest.raises(ValidationError, match=key):
        TokenizerConfig(**values)


def test_config_refuses_inconsistent_values():
    with pytest.raises(ValidationError, match="at least 260"):
        TokenizerConfig(kind="bpe", vocab_size=100)
    assert TokenizerConfig(kind="char", vocab_size=100).vocab_size == 100
    with pytest.raises(ValidationError, match="distinct"):
        TokenizerConfig(pad_token="<unk>")
    with pytest.raises(ValidationError, match="whitespace"):
        TokenizerConfig(bos_token="<s >")
    with pytest.raises(ValidationError, match="frozen"):
        TokenizerConfig().vocab_size = 5  # type: ignore[misc]
