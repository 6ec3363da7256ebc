"""Champion/challenger: should a newly trained model replace the one being served?

In: the candidate's and the current champion's bits per byte on the *same* valid text (each scored with its
own tokenizer, which bits per byte makes comparable), a promotion margin and an optional regression gate.
Out: a ``Decision`` saying whether to move the ``champion`` alias, whether the run fails its evaluation
gate, and why, in words that go into the registry tags and the run summary.

Rules (lower bits per byte is better):
- no champion yet: promote.
- candidate < champion and champion - candidate >= margin: promote (a tie never moves the alias).
- otherwise keep the champion; if ``gate`` is set and candidate > champion + gate, the run fails its
  evaluation gate (a regression beyond tolerance must not look like a normal success).

>>> decide(1.90, 2.00, margin=0.05, gate=None).promote
True
>>> decide(1.98, 2.00, margin=0.05, gate=None).reason
'valid bits per byte 1.9800 does not beat the champion 2.0000 by the margin 0.05'
>>> decide(2.30, 2.00, margin=0.0, gate=0.2).gate_failed
True
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

from pydantic import BaseModel, ConfigDict, Field


class RegistryConfig(BaseModel):
    """families: which trained models are registered (as ``arpipe-<family>``). margin: how much lower the
    candidate's valid bits per byte must be to take the ``champion`` alias. gate: fail the run when the
    candidate is worse than the champion by more than this (None: never fail)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True
    families: list[str] = Field(default_factory=lambda: ["ngram", "rnn", "transformer", "infinigram", "mixture"])
    prefix: str = Field("arpipe-", description="registered model name = prefix + family")
    margin: float = Field(0.0, ge=0.0, description="bits per byte the candidate must gain to be promoted")
    gate: Optional[float] = Field(None, ge=0.0, description="bits per byte of regression that fails the run")
    alias: str = Field("champion", min_length=1)


@dataclass(frozen=True)
class Decision:
    promote: bool
    gate_failed: bool
    reason: str
    candidate_bpb: float
    champion_bpb: Optional[float]


def decide(candidate_bpb: float, champion_bpb: Optional[float], margin: float, gate: Optional[float]) -> Decision:
    if champion_bpb is None or not math.isfinite(champion_bpb):
        return Decision(True, False, "no champion yet", candidate_bpb, champion_bpb)
    if candidate_bpb < champion_bpb and champion_bpb - candidate_bpb >= margin:
        return Decision(True, False, f"valid bits per byte {candidate_bpb:.4f} beats the champion "
                        f"{champion_bpb:.4f} by at least the margin {margin:g}", candidate_bpb, champion_bpb)
    gate_failed = gate is not None and candidate_bpb > champion_bpb + gate
    reason = (f"valid bits per byte {candidate_bpb:.4f} does not beat the champion {champion_bpb:.4f} "
              f"by the margin {margin:g}")
    if gate_failed:
        reason = (f"valid bits per byte {candidate_bpb:.4f} is worse than the champion {champion_bpb:.4f} "
                  f"by more than the gate {gate:g}")
    return Decision(False, gate_failed, reason, candidate_bpb, champion_bpb)
