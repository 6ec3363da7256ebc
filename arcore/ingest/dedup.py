"""Exact-duplicate detection in bounded bytes per document: a compact set of SHA-256 digests.

In: 32-byte SHA-256 digests of normalized document texts, one ``add`` per unique document. Out:
exact membership (``digest in seen``), never a false positive or negative, so ingest drops exactly the
documents whose normalized text was seen before, as a Python ``set`` of digests would.

What it adds over ``set[bytes]``: memory. A Python set holds a 32-byte ``bytes`` object per entry plus
its hash slot, about 107 bytes per document; 5 million documents (1 GB of short paragraphs) would be
half a gigabyte. Here the most recent ``freeze_at`` digests live in a Python set and older ones in one
sorted numpy array of ``S32`` (32 bytes each), merged in with ``searchsorted`` + ``insert`` (linear,
no re-sort), so a large set costs about 33 bytes per document. A 16 MiB bitmap indexed by the first 27
bits of a digest, allocated with the first array, lets most lookups of new documents skip the binary
search (up to ~10 million documents it is mostly empty); only bitmap hits pay for ``searchsorted``.

Lookups in the array compare ``S32`` values, which numpy returns without trailing NUL bytes: a stored
digest ending in ``00`` comes back shorter, so the probe is compared stripped the same way. All digests
are 32 bytes, so equal stripped forms mean equal digests.
"""

from __future__ import annotations

from typing import Iterator, Optional

import numpy as np

FREEZE_AT = 1 << 18  # digests kept as Python bytes before they move into the sorted array (~28 MB)
_BITMAP_BITS = 27


class DigestSet:
    """A set of 32-byte digests: ``add``, ``in``, ``len``, ``update`` (from another DigestSet)."""

    def __init__(self, freeze_at: int = FREEZE_AT):
        self.freeze_at = freeze_at
        self._recent: set[bytes] = set()
        self._sorted = np.empty(0, dtype="S32")
        self._bitmap: Optional[bytearray] = None

    def __len__(self) -> int:
        return len(self._recent) + len(self._sorted)

    def __contains__(self, digest: bytes) -> bool:
        if digest in self._recent:
            return True
        if self._bitmap is None:
            return False
        bit = int.from_bytes(digest[:4], "big") >> (32 - _BITMAP_BITS)
        if not (self._bitmap[bit >> 3] >> (bit & 7)) & 1:
            return False
        i = int(self._sorted.searchsorted(digest))
        return i < len(self._sorted) and self._sorted[i] == digest.rstrip(b"\0")

    def __iter__(self) -> Iterator[bytes]:
        """Every digest, padded back to 32 bytes (order unspecified)."""
        yield from self._recent
        for d in self._sorted.tolist():
            yield d.ljust(32, b"\0")

    def add(self, digest: bytes) -> None:
        if len(digest) != 32:
            raise ValueError(f"a DigestSet holds 32-byte digests, got {len(digest)} bytes")
        self._recent.add(digest)
        if len(self._recent) >= self.freeze_at:
            self._freeze()

    def update(self, other: "DigestSet") -> None:
        """Add every digest of ``other`` (one file's new digests, after the file has read)."""
        if len(other._sorted):
            self._merge(other._sorted)
        for digest in other._recent:
            self.add(digest)

    def _freeze(self) -> None:
        new = np.sort(np.array(list(self._recent), dtype="S32"))
        self._recent = set()
        self._merge(new)

    def _merge(self, new: np.ndarray) -> None:
        """Insert the sorted digests ``new`` (disjoint from this set) into the sorted array."""
        if self._bitmap is None:
            self._bitmap = bytearray(1 << (_BITMAP_BITS - 3))
        self._sorted = np.insert(self._sorted, self._sorted.searchsorted(new), new)
        prefix = np.frombuffer(new.tobytes(), dtype=">u4").reshape(-1, 8)[:, 0] >> (32 - _BITMAP_BITS)
        bits = np.frombuffer(self._bitmap, dtype=np.uint8)
        np.bitwise_or.at(bits, prefix >> 3, np.left_shift(1, prefix & 7).astype(np.uint8))
