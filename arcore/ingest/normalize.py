"""Text normalization with counted repairs.

In: a decoded document. Out: the same text in one canonical form, plus counts of what changed, so the
ingest report can say exactly how many repairs were made and nothing changes silently.

- BOM: a leading U+FEFF is dropped (``bom_removed``)
- NUL: U+0000 characters are dropped (``nul_removed``, counted per character)
- newlines: ``\\r\\n`` and lone ``\\r`` become ``\\n`` (``newlines_normalized``)
- Unicode: NFC composition (``nfc_changed``, counted per document), so "e" + U+0301 and "é" are one
  string and deduplicate together.
- long documents: one longer than ``ingest.max_document_bytes`` is cut into segments by the readers
  (``long_documents_split``, counted per document cut)

>>> counts = Repairs()
>>> normalize_text("\\ufeffcafe\\u0301\\r\\n", counts)
'café\\n'
>>> counts.bom_removed, counts.newlines_normalized, counts.nfc_changed
(1, 1, 1)
"""

from __future__ import annotations

import unicodedata
from dataclasses import asdict, dataclass


@dataclass
class Repairs:
    """Running counts of repairs; mutable because it accumulates across a whole corpus."""

    bom_removed: int = 0
    nul_removed: int = 0
    newlines_normalized: int = 0
    nfc_changed: int = 0
    invalid_utf8_replaced: int = 0
    long_documents_split: int = 0  # documents longer than ingest.max_document_bytes, cut into segments

    def as_dict(self) -> dict[str, int]:
        return asdict(self)

    def total(self) -> int:
        return sum(asdict(self).values())


def normalize_text(text: str, repairs: Repairs) -> str:
    if text.startswith("\ufeff"):
        text = text[1:]
        repairs.bom_removed += 1
    if "\x00" in text:
        repairs.nul_removed += text.count("\x00")
        text = text.replace("\x00", "")
    if "\r" in text:
        repairs.newlines_normalized += text.count("\r")
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    if not unicodedata.is_normalized("NFC", text):
        text = unicodedata.normalize("NFC", text)
        repairs.nfc_changed += 1
    return text
