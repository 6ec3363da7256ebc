"""The documents table, declared once: what ingest writes and every later stage reads.

``documents.parquet``: one row per unique document, in input order.
- doc_id: first 32 hex digits of the SHA-256 of the normalized UTF-8 text (the dedup key)
- split: "train" | "valid" | "test"
- text: normalized text (NFC, ``\\n`` newlines, no NUL, no BOM)
- source: where it came from, ``path:line`` (text, JSONL) or ``path#row`` (Parquet)
"""

import pyarrow as pa

DOCUMENTS_FILE = "documents.parquet"
REPORT_FILE = "report.json"
SPLITS = ("train", "valid", "test")

DOCUMENTS_SCHEMA = pa.schema(
    [
        pa.field("doc_id", pa.string(), nullable=False),
        pa.field("split", pa.string(), nullable=False),
        pa.field("text", pa.large_string(), nullable=False),
        pa.field("source", pa.string(), nullable=False),
    ],
    metadata={b"arpipe.table": b"documents", b"arpipe.text_normalization": b"NFC, LF, no NUL/BOM"},
)
