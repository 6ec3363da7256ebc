"""Settings of the infinigram stage (``[infinigram]`` in the pipeline config)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class InfiniGramConfig(BaseModel):
    """max_suffix_tokens: the longest context suffix looked up (the paper's n is unbounded; this bounds a
    query's cost on corpora with long repeats). length_buckets: interpolation weights are fit per sparsity
    and per matched length 0..length_buckets-1 (longer matches share the last). pseudocount: of the unigram
    fallback. em_iterations: of the weight fit on the valid split."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_suffix_tokens: int = Field(256, ge=1, le=1 << 20)
    length_buckets: int = Field(8, ge=1, le=64)
    pseudocount: float = Field(1.0, gt=0.0)
    em_iterations: int = Field(200, ge=1, le=10000)
