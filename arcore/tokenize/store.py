"""Save a trained tokenizer to a directory, and load it back with its special-token ids checked.

Output files in the tokenizer directory:
- ``tokenizer.json``: HF tokenizers' serialization; loads with ``tokenizers.Tokenizer.from_file`` and with
  ``transformers.PreTrainedTokenizerFast(tokenizer_file=...)``.
- ``tokenizer.sha256``: hex sha256 of the exact bytes of ``tokenizer.json``, newline-terminated. Every
  downstream stage records this digest (shard manifests, model checkpoints) and refuses to mix digests.
- ``tokenizer_meta.json``: kind, vocabulary size, the special tokens with their ids, the resolved config.
- ``tokenizer_config.json`` and ``special_tokens_map.json``: what ``save_pretrained`` writes, so that
  ``transformers.AutoTokenizer.from_pretrained(<this directory>)`` loads a ``PreTrainedTokenizerFast``
  with bos/eos/unk/pad set (``tokenizer.json`` alone loads with all four None, and padding fails).

``load_tokenizer`` sets ``encode_special_tokens = True`` (HF does not serialize it): a document that
contains the string ``</s>`` is encoded as text, so only the shards stage ever writes ``eos_id``.

All writes are atomic (temp file in the same directory, fsync, ``os.replace``).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from tokenizers import Tokenizer

from arcore.errors import StageError
from arcore.io import atomic_write_bytes, sha256_file
from arcore.tokenize.config import SPECIAL_ROLES, TokenizerConfig

TOKENIZER_FILE = "tokenizer.json"
DIGEST_FILE = "tokenizer.sha256"
META_FILE = "tokenizer_meta.json"
HF_CONFIG_FILE = "tokenizer_config.json"
HF_SPECIAL_FILE = "special_tokens_map.json"


@dataclass(frozen=True)
class LoadedTokenizer:
    """A tokenizer read back from its directory, with the ids every stage needs."""

    tokenizer: Tokenizer
    kind: str
    sha256: str
    vocab_size: int
    bos_id: int
    eos_id: int
    unk_id: int
    pad_id: int


def save_tokenizer(tokenizer: Tokenizer, cfg: TokenizerConfig, out_dir: Path) -> str:
    """Write ``tokenizer.json``, its digest and ``tokenizer_meta.json`` into ``out_dir``; return the digest."""
    out_dir = Path(out_dir)
    data = tokenizer.to_str(pretty=True).encode("utf-8")
    digest = hashlib.sha256(data).hexdigest()
    atomic_write_bytes(out_dir / TOKENIZER_FILE, data)
    atomic_write_bytes(out_dir / DIGEST_FILE, (digest + "\n").encode("ascii"))
    specials = {
        role: {"token": token, "id": tokenizer.token_to_id(token)}
        for role, token in zip(SPECIAL_ROLES, cfg.special_tokens)
    }
    meta = {
        "kind": cfg.kind,
        "vocab_size": tokenizer.get_vocab_size(),
        "sha256": digest,
        "special_tokens": specials,
        "config": cfg.model_dump(mode="json"),
    }
    atomic_write_bytes(out_dir / META_FILE, (json.dumps(meta, indent=2, ensure_ascii=False) + "\n").encode())
    save_pretrained_files(cfg, out_dir)
    return digest


def save_pretrained_files(cfg: TokenizerConfig, out_dir: Path) -> None:
    """The two files ``PreTrainedTokenizerFast.save_pretrained`` adds beside ``tokenizer.json``.

    No ``model_max_length``: the tokenizer has none (each model has its own context); no added
    whitespace cleanup on decode, so ``decode(encode(text))`` is the round trip ``tokenizers`` gives.
    """
    special = {f"{role}_token": token for role, token in zip(SPECIAL_ROLES, cfg.special_tokens)}
    config = {"tokenizer_class": "PreTrainedTokenizerFast", "clean_up_tokenization_spaces": False,
              "padding_side": "right", **special}
    for name, data in ((HF_CONFIG_FILE, config), (HF_SPECIAL_FILE, special)):
        atomic_write_bytes(out_dir / name, (json.dumps(data, indent=2, ensure_ascii=False) + "\n").encode())


def read_digest(tokenizer_dir: Path) -> str:
    """The recorded digest of ``tokenizer.json`` (no hashing); StageError when absent."""
    path = Path(tokenizer_dir) / DIGEST_FILE
    if not path.is_file():
        raise StageError(f"{path} not found: run the tokenizer stage first")
    return path.read_text(encoding="ascii").strip()


def load_tokenizer(tokenizer_dir: Path) -> LoadedTokenizer:
    """Load ``tokenizer.json`` after checking it still matches ``tokenizer.sha256``.

    Raises ``StageError`` when a file is missing, the digest does not match (the file was edited or
    truncated), or a special token is not at the id ``tokenizer_meta.json`` promises.
    """
    tokenizer_dir = Path(tokenizer_dir)
    path = tokenizer_dir / TOKENIZER_FILE
    expected = read_digest(tokenizer_dir)
    if not path.is_file():
        raise StageError(f"{path} not found: run the tokenizer stage first")
    actual = sha256_file(path)
    if actual != expected:
        raise StageError(
            f"{path} has sha256 {actual[:12]}… but {DIGEST_FILE} says {expected[:12]}…: the file changed "
            "after training; rerun the tokenizer stage"
        )
    meta = json.loads((tokenizer_dir / META_FILE).read_text(encoding="utf-8"))
    tokenizer = Tokenizer.from_file(str(path))
    tokenizer.encode_special_tokens = True
    ids = {}
    for role in SPECIAL_ROLES:
        entry = meta["special_tokens"][role]
        if tokenizer.token_to_id(entry["token"]) != entry["id"]:
            raise StageError(f"{path}: special token {entry['token']!r} is not at id {entry['id']}")
        ids[f"{role}_id"] = entry["id"]
    return LoadedTokenizer(
        tokenizer=tokenizer, kind=meta["kind"], sha256=actual, vocab_size=tokenizer.get_vocab_size(), **ids
    )
