"""Ingest: raw text (files, folders, .gz, JSONL, Parquet) -> clean, deduplicated, split documents."""

from arcore.ingest.build import build_ingest, input_files, inputs_digest, project_root
from arcore.ingest.config import IngestConfig, InputSpec
from arcore.ingest.schema import DOCUMENTS_FILE, DOCUMENTS_SCHEMA, SPLITS

__all__ = [
    "DOCUMENTS_FILE", "DOCUMENTS_SCHEMA", "SPLITS", "IngestConfig", "InputSpec",
    "build_ingest", "input_files", "inputs_digest", "project_root",
]
