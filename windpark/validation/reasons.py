"""The vocabulary of a verdict: outcomes, reject codes and quality flags.

The string values of ``ReasonCode`` are stored in ``rejected_readings.reasons`` and the
bit values of ``QualityFlag`` in ``readings.quality_flags``: both are part of the
database's meaning, so a member is never renamed, renumbered or reused. Add new ones
at the end and list them in ``docs/reason-codes.md``.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntFlag, StrEnum, unique


class Outcome(StrEnum):
    ACCEPTED = "accepted"
    FLAGGED = "flagged"  # stored, with quality flags
    REJECTED = "rejected"  # not stored as a reading; kept raw with its reasons


@unique
class ReasonCode(StrEnum):
    """Why a message was rejected. Several can apply to one message."""

    # The message as bytes and as JSON.
    OVERSIZED = "oversized"
    MALFORMED_JSON = "malformed_json"
    NOT_AN_OBJECT = "not_an_object"
    UNSUPPORTED_VERSION = "unsupported_version"
    # The shape of the object.
    MISSING_FIELD = "missing_field"
    UNKNOWN_FIELD = "unknown_field"
    DUPLICATE_FIELD = "duplicate_field"
    WRONG_TYPE = "wrong_type"
    NON_FINITE = "non_finite"
    INVALID_VALUE = "invalid_value"  # a field error no other code describes
    # Field formats.
    INVALID_TURBINE_ID = "invalid_turbine_id"
    INVALID_SEQ = "invalid_seq"
    INVALID_STATE = "invalid_state"
    INVALID_TIMESTAMP = "invalid_timestamp"
    MISSING_UTC_OFFSET = "missing_utc_offset"
    # Time window.
    FUTURE_TIMESTAMP = "future_timestamp"
    STALE_TIMESTAMP = "stale_timestamp"
    # Identity.
    UNKNOWN_TURBINE = "unknown_turbine"
    TURBINE_MISMATCH = "turbine_mismatch"
    # Physical limits.
    POWER_OUT_OF_RANGE = "power_out_of_range"
    WIND_OUT_OF_RANGE = "wind_out_of_range"
    TEMPERATURE_OUT_OF_RANGE = "temperature_out_of_range"
    ROTOR_RPM_OUT_OF_RANGE = "rotor_rpm_out_of_range"
    PITCH_OUT_OF_RANGE = "pitch_out_of_range"
    NACELLE_TEMPERATURE_OUT_OF_RANGE = "nacelle_temperature_out_of_range"
    WIND_DIRECTION_OUT_OF_RANGE = "wind_direction_out_of_range"
    SETPOINT_OUT_OF_RANGE = "setpoint_out_of_range"


class QualityFlag(IntFlag):
    """Doubts about a stored reading; the bits of ``readings.quality_flags``."""

    POWER_WIND_MISMATCH = 1
    SPIKE = 2
    STUCK_SENSOR = 4
    SEQ_GAP = 8
    OUT_OF_ORDER = 16
    # The sequence number went back while time went forward: the sender restarted its
    # counter. Told apart from OUT_OF_ORDER so that one restart flags one reading,
    # not every reading until the counter passes its old value.
    SEQ_RESET = 32


NO_FLAGS = QualityFlag(0)


@dataclass(frozen=True, slots=True)
class Reason:
    code: ReasonCode
    message: str  # for people; may change between versions, unlike code
    field: str | None = None


def printable(text: str, limit: int = 64) -> str:
    """Text from a payload made safe to show and to store.

    Keys and values come from the sender: a NUL or a lone surrogate would make
    PostgreSQL refuse the reject row (text and jsonb cannot hold them), and a long
    key would bloat it.
    """
    if not text.isprintable():
        text = ascii(text)[1:-1]
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return text
