"""Ingest settings: which inputs to read, how to cut them into documents, how to split them."""

from __future__ import annotations

from typing import Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, model_validator

Split = Literal["train", "valid", "test"]


class InputSpec(BaseModel):
    """One input: a file, a directory (read recursively) or a glob.

    ``split`` assigns every document of this input to one split instead of the hash split, e.g. a
    held-out file: ``{path = "data/valid.txt", split = "valid"}``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    path: str = Field(min_length=1)
    split: Optional[Split] = None


class IngestConfig(BaseModel):
    """How raw text becomes clean, deduplicated, split documents.

    Formats are chosen by file name: ``.txt`` (and any other name), ``.txt.gz``, ``.jsonl``/``.jsonl.gz``
    (one JSON object per line, text under ``text_field``), ``.parquet`` (text in ``text_column``).
    ``unit`` cuts plain text into documents: one per ``line``, per blank-line separated ``paragraph``,
    or one per ``file``. JSONL records and Parquet rows are always one document each.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    inputs: list[Union[str, InputSpec]] = Field(
        default_factory=lambda: ["data/tinyshakespeare/input.txt"], min_length=1
    )
    unit: Literal["line", "paragraph", "file"] = "paragraph"
    text_field: str = Field("text", min_length=1, description="JSONL: key holding the text")
    text_column: str = Field("text", min_length=1, description="Parquet: column holding the text")
    encoding_errors: Literal["strict", "replace"] = Field(
        "strict", description="invalid UTF-8: refuse (strict) or replace with U+FFFD and count"
    )
    on_error: Literal["fail", "skip"] = Field(
        "fail",
        description="a corrupt file or record (truncated .gz, bad JSON line, missing field, unreadable "
        "file): fail the stage, or skip it and list it in the report",
    )
    valid_fraction: float = Field(0.05, ge=0.0, lt=1.0)
    test_fraction: float = Field(0.05, ge=0.0, lt=1.0)
    split_salt: str = Field("arpipe", description="changes the hash split without changing the data")
    # Bounds ingest's memory (about two row groups of text are buffered, see writer.py) and the memory
    # of every reader of documents.parquet; the 1.1 MB sample fits in one row group.
    row_group_bytes: int = Field(
        16 << 20, ge=1, description="UTF-8 bytes of text per row group of documents.parquet"
    )

    # Bounds the memory every later stage spends on one document (tokenizer training and encoding hold a
    # document's tokens, offsets and strings at once: a 60 MB line took the shards stage to 10 GB). A
    # longer document is cut into segments of at most this size (at a newline or space when there is
    # one), each a document of its own, counted in the report's repairs as ``long_documents_split``.
    max_document_bytes: int = Field(
        1 << 20, ge=1024, le=1 << 30, description="UTF-8 bytes of one document; longer ones are cut into segments"
    )

    @model_validator(mode="after")
    def _fractions(self) -> "IngestConfig":
        if self.valid_fraction + self.test_fraction >= 1.0:
            raise ValueError(
                f"valid_fraction + test_fraction must be < 1 (got {self.valid_fraction} + "
                f"{self.test_fraction}); the train split would be empty"
            )
        return self

    @property
    def input_specs(self) -> list[InputSpec]:
        return [i if isinstance(i, InputSpec) else InputSpec(path=i) for i in self.inputs]
