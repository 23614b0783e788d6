"""Validation of readings: the one function the concentrator and HTTP ingest both call.

``judge(raw, now=..., turbines=..., track=...)`` returns a ``Verdict``: accepted,
flagged (stored with ``QualityFlag`` bits) or rejected (with ``ReasonCode`` reasons).
It is pure: no I/O, no clock, no mutation. The stable codes and bits are listed in
``docs/reason-codes.md``.
"""

from windpark.validation.judge import (
    TurbineContext,
    TurbineInfo,
    Verdict,
    judge,
    judge_reading,
    peek_turbine_id,
)
from windpark.validation.limits import DEFAULT_LIMITS, Limits
from windpark.validation.reasons import NO_FLAGS, Outcome, QualityFlag, Reason, ReasonCode
from windpark.validation.soft import Run, TurbineTrack, track_from_history

__all__ = [
    "DEFAULT_LIMITS",
    "NO_FLAGS",
    "Limits",
    "Outcome",
    "QualityFlag",
    "Reason",
    "ReasonCode",
    "Run",
    "TurbineContext",
    "TurbineInfo",
    "TurbineTrack",
    "Verdict",
    "judge",
    "judge_reading",
    "peek_turbine_id",
    "track_from_history",
]
