"""The wire contract: the reading message and the broker names every service uses.

This is the only place where the message schema, its version, routing keys, MQTT
topics and queue arguments are written down. The generator, the concentrator and
the API import it; nothing re-declares any of it.

A reading on the wire is a JSON object (UTF-8)::

    {"v": 1, "turbine_id": "WTG01", "ts": "2026-11-28T18:00:00.000Z", "seq": 42,
     "power_kw": 1234.5, "wind_speed_ms": 9.8, "temperature_c": 11.2,
     "state": "running", "rotor_rpm": 14.1}

``ts`` is an RFC 3339 string with an explicit UTC offset; numbers must be finite.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Final, Literal

import orjson
from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field

SCHEMA_VERSION: Final = 1

# Broker topology ---------------------------------------------------------------------------
EXCHANGE: Final = "telemetry"  # durable topic exchange, routing key telemetry.<turbine_id>
ROUTING_PREFIX: Final = "telemetry"
ROUTING_PATTERN: Final = "telemetry.*"
QUEUE: Final = "concentrator.readings"  # quorum queue consumed by the concentrator(s)
DEAD_LETTER_EXCHANGE: Final = "telemetry.dead"  # fanout; messages past the delivery limit
DEAD_LETTER_QUEUE: Final = "telemetry.dead"
# A message that fails this many deliveries (crash loops, poison) is dead-lettered, not lost.
DELIVERY_LIMIT: Final = 20
# MQTT devices publish to telemetry/<turbine_id>; RabbitMQ's MQTT plugin turns "/" into ".",
# so they land on the same exchange with the same routing key as AMQP publishers.
MQTT_TOPIC_PREFIX: Final = "telemetry"

QUEUE_ARGUMENTS: Final[dict[str, Any]] = {
    "x-queue-type": "quorum",
    "x-delivery-limit": DELIVERY_LIMIT,
    "x-dead-letter-exchange": DEAD_LETTER_EXCHANGE,
    # at-least-once dead-lettering needs reject-publish overflow; with drop-head RabbitMQ
    # silently falls back to at-most-once.
    "x-dead-letter-strategy": "at-least-once",
    "x-overflow": "reject-publish",
}
DEAD_LETTER_QUEUE_ARGUMENTS: Final[dict[str, Any]] = {"x-queue-type": "quorum"}

CONTENT_TYPE: Final = "application/json"
# Largest message the concentrator will try to decode; bigger ones are rejected (kept raw).
MAX_MESSAGE_BYTES: Final = 16 * 1024

TURBINE_ID_RE: Final = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def routing_key(turbine_id: str) -> str:
    return f"{ROUTING_PREFIX}.{turbine_id}"


def mqtt_topic(turbine_id: str) -> str:
    return f"{MQTT_TOPIC_PREFIX}/{turbine_id}"


def turbine_from_routing_key(key: str) -> str | None:
    prefix, _, rest = key.partition(".")
    if prefix != ROUTING_PREFIX or not TURBINE_ID_RE.fullmatch(rest):
        return None
    return rest


class TurbineState(StrEnum):
    """Operating state reported by the turbine controller (IEC 61400-25 WTUR-like)."""

    IDLE = "idle"  # below cut-in, ready
    RUNNING = "running"
    STORM = "storm"  # stopped above cut-out, waits for the wind to drop
    FAULT = "fault"
    MAINTENANCE = "maintenance"
    CURTAILED = "curtailed"  # running, limited to a set-point


# States in which a turbine must not produce power.
NON_PRODUCING_STATES: Final = frozenset(
    {TurbineState.IDLE, TurbineState.STORM, TurbineState.FAULT, TurbineState.MAINTENANCE}
)


def _to_utc(value: datetime) -> datetime:
    try:
        return value.astimezone(UTC)
    except OverflowError as exc:  # e.g. 0001-01-01T00:00:00+01:00
        raise ValueError("timestamp out of range") from exc


def _wire_schema(schema: dict[str, Any]) -> None:
    """The JSON schema says what the decoder (windpark.validation.decoding) does.

    ``v`` has a default so that code building a Reading need not repeat it, but on the
    wire it is required: a message without it is refused. Without this, the schema
    would offer ``v`` as optional with a default of 1.
    """
    schema["properties"]["v"].pop("default", None)
    schema["required"] = ["v", *schema["required"]]


FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]
OptionalFiniteFloat = Annotated[float | None, Field(default=None, allow_inf_nan=False)]


class Reading(BaseModel):
    """One reading of one turbine, as it travels on the wire (schema version 1)."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, strict=True, json_schema_extra=_wire_schema
    )

    v: Literal[1] = SCHEMA_VERSION
    turbine_id: Annotated[str, Field(pattern=TURBINE_ID_RE.pattern)]
    # AwareDatetime: a timestamp without a UTC offset is refused, never guessed.
    ts: Annotated[AwareDatetime, AfterValidator(_to_utc)]
    seq: Annotated[int, Field(ge=0, le=2**63 - 1)]
    power_kw: FiniteFloat
    wind_speed_ms: FiniteFloat
    temperature_c: FiniteFloat
    state: TurbineState
    # Optional extra channels.
    rotor_rpm: OptionalFiniteFloat = None
    pitch_deg: OptionalFiniteFloat = None
    nacelle_temperature_c: OptionalFiniteFloat = None
    wind_direction_deg: OptionalFiniteFloat = None
    setpoint_kw: OptionalFiniteFloat = None

    def to_wire(self) -> dict[str, Any]:
        data = self.model_dump(exclude_none=True, mode="python")
        data["ts"] = format_ts(self.ts)
        data["state"] = str(self.state)
        return data


OPTIONAL_CHANNELS: Final = (
    "rotor_rpm",
    "pitch_deg",
    "nacelle_temperature_c",
    "wind_direction_deg",
    "setpoint_kw",
)


def format_ts(ts: datetime) -> str:
    """RFC 3339 in UTC with millisecond precision and a ``Z`` offset."""
    if ts.tzinfo is None:
        raise ValueError("naive datetimes are not allowed on the wire")
    return ts.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def encode(reading: Reading) -> bytes:
    return orjson.dumps(reading.to_wire())


def encode_dict(data: dict[str, Any]) -> bytes:
    """Encode an already wire-shaped mapping (used by the simulator's fault injector)."""
    return orjson.dumps(data)
