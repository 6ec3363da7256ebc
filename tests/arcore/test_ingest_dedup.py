"""DigestSet: exact membership like ``set[bytes]``, across the Python set / sorted array boundary.

Property test against a Python set, with the cases where a compact representation could go wrong:
digests ending in NUL bytes (numpy's ``S32`` strips them on read), digests sharing a long prefix with a
stored one (same bitmap bit, neighbouring position in the array), and sets merged from another set.
"""

import hashlib

import pytest

from arcore.ingest.dedup import DigestSet


def digests(n: int, tag: bytes) -> list[bytes]:
    return [hashlib.sha256(tag + b"%d" % i).digest() for i in range(n)]


def test_membership_is_exact_across_freezes():
    stored = digests(2000, b"a")
    stored += [d[:30] + b"\0\0" for d in stored[:50]] + [b"\0" * 32, b"\xff" * 31 + b"\0"]
    seen = DigestSet(freeze_at=64)
    for d in stored:
        seen.add(d)
    assert len(seen) == len(stored) and len(seen._sorted) > 1900  # most digests live in the array
    assert all(d in seen for d in stored)
    near = [d[:31] + bytes([d[31] ^ 1]) for d in stored] + [d[:30] + b"\0\x01" for d in stored[:50]]
    absent = digests(2000, b"b") + [d for d in near if d not in set(stored)] + [b"\0" * 31 + b"\x01"]
    assert not any(d in seen for d in absent)
    assert sorted(seen) == sorted(stored)


def test_update_merges_another_set_of_new_digests():
    a, b = digests(500, b"a"), digests(700, b"b")
    seen, part = DigestSet(freeze_at=100), DigestSet(freeze_at=100)
    for d in a:
        seen.add(d)
    for d in b:
        part.add(d)
    seen.update(part)
    assert len(seen) == 1200 and all(d in seen for d in a + b)
    assert not any(d in seen for d in digests(300, b"c"))


def test_only_digests_are_held():
    with pytest.raises(ValueError, match="32-byte digests"):
        DigestSet().add(b"short")
