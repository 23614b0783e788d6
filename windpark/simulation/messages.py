"""What the simulator hands the generator: messages to publish and their ground truth."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class FaultKind(StrEnum):
    # Hard: the validator must reject the message.
    OUT_OF_RANGE = "out_of_range"
    NEGATIVE_POWER = "negative_power"
    NON_FINITE = "non_finite"
    MISSING_FIELD = "missing_field"
    WRONG_TYPE = "wrong_type"
    MALFORMED_JSON = "malformed_json"
    FUTURE_TS = "future_ts"
    FAR_PAST_TS = "far_past_ts"
    NO_UTC_OFFSET = "no_utc_offset"
    OVERSIZED = "oversized"
    UNKNOWN_TURBINE = "unknown_turbine"
    # Soft: stored, flagged.
    SPIKE = "spike"
    POWER_WIND_MISMATCH = "power_wind_mismatch"
    STUCK_SENSOR = "stuck_sensor"
    OUT_OF_ORDER = "out_of_order"
    # The same message twice.
    DUPLICATE = "duplicate"


HARD_KINDS = frozenset(
    {
        FaultKind.OUT_OF_RANGE,
        FaultKind.NEGATIVE_POWER,
        FaultKind.NON_FINITE,
        FaultKind.MISSING_FIELD,
        FaultKind.WRONG_TYPE,
        FaultKind.MALFORMED_JSON,
        FaultKind.FUTURE_TS,
        FaultKind.FAR_PAST_TS,
        FaultKind.NO_UTC_OFFSET,
        FaultKind.OVERSIZED,
        FaultKind.UNKNOWN_TURBINE,
    }
)
SOFT_KINDS = frozenset(
    {
        FaultKind.SPIKE,
        FaultKind.POWER_WIND_MISMATCH,
        FaultKind.STUCK_SENSOR,
        FaultKind.OUT_OF_ORDER,
    }
)


class Expected(StrEnum):
    """The verdict a validator that follows the agreement gives a message."""

    ACCEPTED = "accepted"
    FLAGGED = "flagged"
    REJECTED = "rejected"
    DUPLICATE = "duplicate"


@dataclass(frozen=True, slots=True)
class TruthRecord:
    """One line of the ground-truth log: a message that a fault affected."""

    turbine_id: str  # the sender, also when the body names another turbine
    seq: int
    kind: FaultKind
    expected: Expected
    event: bool = False  # the reading on which the fault event started

    def to_json(self) -> dict[str, Any]:
        record: dict[str, Any] = {
            "turbine_id": self.turbine_id,
            "seq": self.seq,
            "kind": str(self.kind),
            "expected": str(self.expected),
        }
        if self.event:
            record["event"] = True
        return record


@dataclass(frozen=True, slots=True)
class Emission:
    """One message to publish, in the order returned."""

    turbine_id: str  # the turbine the body names (another one for unknown_turbine)
    routing_turbine_id: str  # the sender: publish under its routing key
    seq: int | None  # the sender's seq of the reading this message carries
    payload: bytes
    truth: tuple[TruthRecord, ...] = ()
