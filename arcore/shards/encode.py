"""The map step: a batch of documents -> their token ids, each followed by ``</s>``, plus counts.

Input: a tokenizer, ``(doc_ids, texts)`` for one batch, the eos/unk ids and the id dtype. Output: an
``EncodedBatch`` of flat numpy arrays. The function is pure (no I/O, no state between calls): batches can
be encoded in any order, by any worker, and the writer (``arcore.shards.writer``) reduces them in order.
Parallelism inside a batch comes from ``Tokenizer.encode_batch_fast`` (Rust, rayon threads, GIL released);
across batches from a mapper (``arcore.parallel``) running ``encode_job`` on ``EncodeJob`` pieces, which
carry the tokenizer as its JSON text so a worker on another machine needs no access to the work dir.

Example: texts ``["to be", "or"]`` with a word tokenizer {to: 4, be: 5, or: 6} and eos_id 1 give
``ids = [4, 5, 1, 6, 1]``, ``offsets = [0, 3, 5]``, ``source_bytes = [6, 3]``, ``words = [2, 1]``.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import chain
from threading import Lock

import numpy as np
from tokenizers import Encoding, Tokenizer


@dataclass(frozen=True)
class EncodedBatch:
    """Documents ``doc_ids[i]`` own ``ids[offsets[i]:offsets[i + 1]]`` (the last id is eos)."""

    doc_ids: list[str]
    ids: np.ndarray
    offsets: np.ndarray
    source_bytes: np.ndarray
    words: np.ndarray
    unk_tokens: int

    @property
    def documents(self) -> int:
        return len(self.doc_ids)

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)


def encode_documents(
    tokenizer: Tokenizer, doc_ids: list[str], texts: list[str], eos_id: int, unk_id: int, dtype: str
) -> EncodedBatch:
    """Encode ``texts`` in one ``encode_batch_fast`` call and lay the ids out flat with eos after each."""
    encodings = tokenizer.encode_batch_fast(texts, add_special_tokens=False)
    return lay_out(doc_ids, texts, encodings, eos_id, unk_id, dtype)


def lay_out(
    doc_ids: list[str], texts: list[str], encodings: list[Encoding], eos_id: int, unk_id: int, dtype: str
) -> EncodedBatch:
    """The Python half of ``encode_documents``: encodings -> flat ids with eos, offsets and counts.

    Split out so a caller can run the Rust half (``encode_batch_fast``, GIL released) for the next
    batch while this half runs for the current one.
    """
    per_doc = [encoding.ids for encoding in encodings]
    lengths = np.fromiter(map(len, per_doc), dtype=np.int64, count=len(per_doc))
    body = np.fromiter(chain.from_iterable(per_doc), dtype=dtype, count=int(lengths.sum()))
    unk_tokens = int(np.count_nonzero(body == unk_id))
    # np.insert at the end of each document's run appends eos after every document in one pass.
    ids = np.insert(body, np.cumsum(lengths), eos_id)
    offsets = np.zeros(len(per_doc) + 1, dtype=np.int64)
    np.cumsum(lengths + 1, out=offsets[1:])
    source_bytes = np.fromiter((len(t.encode("utf-8")) + 1 for t in texts), dtype=np.int64, count=len(texts))
    words = np.fromiter((len(t.split()) for t in texts), dtype=np.int64, count=len(texts))
    return EncodedBatch(list(doc_ids), ids, offsets, source_bytes, words, unk_tokens)


@dataclass(frozen=True)
class EncodeJob:
    """One batch for a mapper: the tokenizer (its ``tokenizer.json`` text and sha256) and the documents."""

    tokenizer_sha256: str
    tokenizer_json: str
    doc_ids: list[str]
    texts: list[str]
    eos_id: int
    unk_id: int
    dtype: str


# Per worker process: tokenizers already built from JSON, by sha256 (a worker encodes many batches).
_TOKENIZERS: dict[str, Tokenizer] = {}
_TOKENIZERS_LOCK = Lock()


def encode_job(job: EncodeJob) -> EncodedBatch:
    """``encode_documents`` for one ``EncodeJob``, building (once per process) the tokenizer it names."""
    with _TOKENIZERS_LOCK:
        tokenizer = _TOKENIZERS.get(job.tokenizer_sha256)
        if tokenizer is None:
            tokenizer = Tokenizer.from_str(job.tokenizer_json)
            tokenizer.encode_special_tokens = True  # as load_tokenizer does: "</s>" in a document is text
            if len(_TOKENIZERS) >= 4:
                _TOKENIZERS.clear()
            _TOKENIZERS[job.tokenizer_sha256] = tokenizer
    return encode_documents(tokenizer, job.doc_ids, job.texts, job.eos_id, job.unk_id, job.dtype)
