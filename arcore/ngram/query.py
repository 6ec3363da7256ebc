"""Perplexity with KenLM query's conventions, over a flat id array.

Input: a model and ids in the shard layout, with a mask of OOV positions (test words never seen in
training, already mapped to ``<unk>``). Output: ``QueryResult``.

Conventions (KenLM ``query``): tokens = words + one ``</s>`` per sentence (``<s>`` is context only);
the total is the log10 probability of all tokens, OOVs included (they are scored as ``<unk>``);
``perplexity = 10 ** (-total / tokens)``; "excluding OOVs" drops the OOV tokens from both the sum and the
count. Bits per byte divides the same total (in nats) by ``ln 2 * bytes`` when a byte count is given.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from arcore.lm import LanguageModel


@dataclass(frozen=True)
class QueryResult:
    total_log10: float
    tokens: int
    oov: int
    perplexity: float
    perplexity_excl_oov: float

    def as_metrics(self, prefix: str = "") -> dict[str, float]:
        return {f"{prefix}{k}": float(v) for k, v in self.__dict__.items()}


def query(model: LanguageModel, ids: np.ndarray, oov: np.ndarray | None = None) -> QueryResult:
    """Score ``ids`` with ``model`` and summarise as KenLM's query does."""
    ids = np.asarray(ids, dtype=np.int64)
    oov = np.zeros(ids.size, dtype=bool) if oov is None else np.asarray(oov, dtype=bool)
    log10 = model.score(ids) / np.log(10.0)
    total = float(log10.sum())
    n, n_oov = int(ids.size), int(oov.sum())
    kept = n - n_oov
    with np.errstate(over="ignore", invalid="ignore"):
        ppl = float(10.0 ** (-total / n)) if n else float("nan")
        ppl_excl = float(10.0 ** (-(total - log10[oov].sum()) / kept)) if kept else float("nan")
    return QueryResult(total, n, n_oov, ppl, ppl_excl)


def bits_per_byte(model: LanguageModel, ids: np.ndarray, num_bytes: int) -> float:
    """Total NLL in nats over all predicted tokens / (ln 2 * bytes)."""
    return float(-model.score(np.asarray(ids, dtype=np.int64)).sum() / (np.log(2.0) * num_bytes))
