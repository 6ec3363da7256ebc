"""Deterministic hash-based train/valid/test split.

A document's split depends only on its content digest and a salt, never on input order or on the other
documents: adding a file does not move existing documents between splits, and reruns are identical.

u = first 8 bytes of BLAKE2b(salt || doc digest) as an integer / 2**64, uniform in [0, 1);
u < test_fraction -> test; u < test_fraction + valid_fraction -> valid; else train.
"""

from __future__ import annotations

import hashlib


def hash_split(doc_digest: bytes, valid_fraction: float, test_fraction: float, salt: str) -> str:
    h = hashlib.blake2b(doc_digest, digest_size=8, key=salt.encode("utf-8")[:64]).digest()
    u = int.from_bytes(h, "big") / 2**64
    if u < test_fraction:
        return "test"
    if u < test_fraction + valid_fraction:
        return "valid"
    return "train"
