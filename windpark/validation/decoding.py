"""From raw bytes to a ``Reading``, or to every format problem the message has.

pydantic (``Reading.model_validate_json``, strict) is the authority on the schema. A
second, tolerant parse with the standard library's ``json`` sees what pydantic hides
or stumbles on: a missing or non-integer ``v`` (the model has a default, and its
``Literal[1]`` accepts ``true`` and ``1.0``), repeated keys (pydantic keeps the last
one silently), a timestamp without an offset (the model converts it with the host's
local zone) or one that overflows when converted to UTC (the model's validator raises
``OverflowError`` instead of a validation error). The tolerant parse also lets the
value checks run on the fields that are fine when others are broken.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from pydantic import TypeAdapter, ValidationError
from pydantic_core import ErrorDetails

from windpark.contract import (
    OPTIONAL_CHANNELS,
    SCHEMA_VERSION,
    TURBINE_ID_RE,
    Reading,
    TurbineState,
)
from windpark.validation.limits import Limits
from windpark.validation.reasons import Reason, ReasonCode, printable

FIELD_NAMES: Final = tuple(Reading.model_fields)
NUMBER_FIELDS: Final = ("power_kw", "wind_speed_ms", "temperature_c", *OPTIONAL_CHANNELS)
BIGINT_MIN: Final = -(2**63)
BIGINT_MAX: Final = 2**63 - 1
# Longer integer literals are out of range for every field; Python refuses to convert
# more than 4300 digits at all, which would make a valid JSON document "undecodable".
_MAX_INT_DIGITS: Final = 300
# Stands in for a timestamp pydantic cannot be trusted with, so that the other fields
# still get their own errors. Never reaches a Reading that is used.
_PLACEHOLDER_TS: Final = "2000-01-01T00:00:00Z"
_TS_ADAPTER: Final = TypeAdapter(datetime)
_STATES: Final = frozenset(state.value for state in TurbineState)

_EXPECTED: Final = {
    "v": "the integer 1",
    "turbine_id": "a string",
    "ts": "an RFC 3339 date-time string",
    "seq": "an integer",
    "state": "a string",
    **dict.fromkeys(NUMBER_FIELDS, "a number"),
}


@dataclass(frozen=True, slots=True)
class Fields:
    """The values of a message that passed their own checks; None where absent or broken."""

    turbine_id: str | None = None
    ts: datetime | None = None
    seq: int | None = None
    state: TurbineState | None = None
    power_kw: float | None = None
    wind_speed_ms: float | None = None
    temperature_c: float | None = None
    rotor_rpm: float | None = None
    pitch_deg: float | None = None
    nacelle_temperature_c: float | None = None
    wind_direction_deg: float | None = None
    setpoint_kw: float | None = None

    @classmethod
    def from_reading(cls, reading: Reading) -> Fields:
        return cls(**{name: getattr(reading, name) for name in FIELD_NAMES if name != "v"})


@dataclass(frozen=True, slots=True)
class Decoded:
    reading: Reading | None  # only when every format check passed
    fields: Fields
    reasons: tuple[Reason, ...]
    body_turbine_id: str | None  # as written in the body, when it has the right format
    body_seq: int | None  # as written, when an integer that fits a bigint (even if invalid)


class _Object(dict[str, Any]):
    """A JSON object that remembers which keys it saw more than once."""

    duplicates: tuple[str, ...] = ()


def _object_pairs(pairs: list[tuple[str, Any]]) -> _Object:
    obj = _Object(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        repeated: dict[str, None] = {}
        for key, _ in pairs:
            if key in seen:
                repeated[key] = None
            seen.add(key)
        obj.duplicates = tuple(repeated)
    return obj


class _HugeInt(int):
    """An integer literal too long to convert, kept as a stand-in of the same sign that
    is out of range for every field (and not mistaken for a NaN or Infinity token)."""


def _parse_int(text: str) -> int:
    if len(text.lstrip("-")) > _MAX_INT_DIGITS:
        return _HugeInt(-(10**_MAX_INT_DIGITS) if text.startswith("-") else 10**_MAX_INT_DIGITS)
    return int(text)


def parse_object(raw: bytes, limits: Limits) -> tuple[_Object | None, Reason | None]:
    """The message as a JSON object, or the reason it is not one."""
    if len(raw) > limits.max_bytes:
        return None, Reason(
            ReasonCode.OVERSIZED,
            f"the message has {len(raw)} bytes, more than the limit of {limits.max_bytes}",
        )
    try:
        # Decoded here so that json.loads cannot guess UTF-16 or UTF-32 from the bytes.
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return None, Reason(
            ReasonCode.MALFORMED_JSON, f"the message is not valid UTF-8 (byte {exc.start})"
        )
    try:
        obj = json.loads(text, object_pairs_hook=_object_pairs, parse_int=_parse_int)
    except RecursionError:
        return None, Reason(ReasonCode.MALFORMED_JSON, "the JSON is nested too deeply")
    except ValueError as exc:
        return None, Reason(ReasonCode.MALFORMED_JSON, f"the message is not JSON: {exc}")
    if not isinstance(obj, _Object):
        return None, Reason(
            ReasonCode.NOT_AN_OBJECT, f"the message is {json_kind(obj)}, not a JSON object"
        )
    return obj, None


def decode(raw: bytes, limits: Limits) -> Decoded:
    obj, reason = parse_object(raw, limits)
    if obj is None:
        assert reason is not None
        return Decoded(None, Fields(), (reason,), None, None)
    body_turbine_id = turbine_id_of(obj)
    body_seq = _bigint(obj.get("seq"))

    reasons: list[Reason] = []
    ts, ts_reason = _precheck_ts(obj.get("ts"))
    source = raw
    if ts_reason is not None:
        reasons.append(ts_reason)
        source = json.dumps({**obj, "ts": _PLACEHOLDER_TS}).encode()
    try:
        reading: Reading | None = Reading.model_validate_json(source)
    except ValidationError as exc:
        reading = None
        errors = exc.errors(include_url=False, include_input=False)
        if any(err["type"] == "json_invalid" for err in errors):
            # json accepted what pydantic's parser refuses (lone surrogates, nesting
            # deeper than its limit): the document is not one we can store.
            msg = next(printable(e["msg"], 200) for e in errors if e["type"] == "json_invalid")
            return Decoded(
                None,
                Fields(),
                (Reason(ReasonCode.MALFORMED_JSON, msg),),
                body_turbine_id,
                body_seq,
            )
        reasons.extend(reason_for_error(err, obj) for err in errors)

    if not any(r.field == "v" for r in reasons):
        version = obj.get("v")
        if "v" not in obj:
            reasons.append(
                Reason(ReasonCode.UNSUPPORTED_VERSION, "the schema version v is missing", "v")
            )
        elif type(version) is not int or version != SCHEMA_VERSION:
            reasons.append(_unsupported_version(version))
    reasons.extend(
        Reason(
            ReasonCode.DUPLICATE_FIELD,
            f"field '{printable(key)}' appears more than once",
            printable(key),
        )
        for key in obj.duplicates
    )

    reasons = sorted(_unique(reasons), key=_field_order)
    if reasons:
        bad = {r.field for r in reasons}
        fields = _salvage(obj, bad, ts)
        return Decoded(None, fields, tuple(reasons), body_turbine_id, body_seq)
    assert reading is not None
    return Decoded(reading, Fields.from_reading(reading), (), body_turbine_id, body_seq)


def turbine_id_of(obj: dict[str, Any]) -> str | None:
    value = obj.get("turbine_id")
    # fullmatch: the contract's pattern ends in "$", which re also matches before a
    # trailing newline.
    if isinstance(value, str) and TURBINE_ID_RE.fullmatch(value):
        return value
    return None


def reason_for_error(err: ErrorDetails, obj: dict[str, Any]) -> Reason:
    """Map one pydantic error of ``Reading`` to a reason code."""
    loc = err["loc"]
    name = str(loc[0]) if loc else None
    value = obj.get(name) if name is not None else None
    code = code_for_error(err["type"], name, value)
    field = printable(name) if name is not None else None
    message = _MESSAGES[code].format(
        field=field or "message",
        value=show(value),
        expected=_EXPECTED.get(name or "", "another type"),
        kind=json_kind(value),
        detail=printable(err["msg"], 160),
    )
    return Reason(code, message, field)


def code_for_error(kind: str, field: str | None, value: object) -> ReasonCode:
    """The first rule that matches a pydantic error type, its field and its raw value."""
    rules = (
        (
            field is None and kind in ("model_type", "model_attributes_type", "dict_type"),
            ReasonCode.NOT_AN_OBJECT,
        ),
        (field is None, ReasonCode.INVALID_VALUE),
        (kind == "missing", ReasonCode.MISSING_FIELD),
        (kind == "extra_forbidden", ReasonCode.UNKNOWN_FIELD),
        (field == "v", ReasonCode.UNSUPPORTED_VERSION),
        # A NaN is reported as such even where a string was expected: it is the clearer
        # diagnosis of a sender that writes NaN tokens.
        (kind == "finite_number" or is_non_finite(value), ReasonCode.NON_FINITE),
        (
            kind.endswith("_type") or (kind == "enum" and not isinstance(value, str)),
            ReasonCode.WRONG_TYPE,
        ),
        (field == "turbine_id", ReasonCode.INVALID_TURBINE_ID),
        (field == "ts", ReasonCode.INVALID_TIMESTAMP),
        (field == "seq", ReasonCode.INVALID_SEQ),
        (field == "state", ReasonCode.INVALID_STATE),
    )
    return next((code for matches, code in rules if matches), ReasonCode.INVALID_VALUE)


# Templates only: values from the payload are passed as arguments, never formatted in.
_MESSAGES: Final = {
    ReasonCode.NOT_AN_OBJECT: "the message is not a JSON object",
    ReasonCode.MISSING_FIELD: "required field '{field}' is missing",
    ReasonCode.UNKNOWN_FIELD: f"field '{{field}}' is not in schema version {SCHEMA_VERSION}",
    ReasonCode.UNSUPPORTED_VERSION: (
        f"schema version v must be the integer {SCHEMA_VERSION}, got {{value}}"
    ),
    ReasonCode.NON_FINITE: "{field} must be a finite number, got {value}",
    ReasonCode.WRONG_TYPE: "{field} must be {expected}, got {kind}",
    ReasonCode.INVALID_TURBINE_ID: "turbine_id {value} is not 1 to 64 letters, digits, _ or -",
    ReasonCode.INVALID_TIMESTAMP: "ts {value} is not a valid RFC 3339 date-time ({detail})",
    ReasonCode.INVALID_SEQ: f"seq {{value}} is outside 0..{BIGINT_MAX}",
    ReasonCode.INVALID_STATE: f"state {{value}} is not one of {', '.join(TurbineState)}",
    ReasonCode.INVALID_VALUE: "{field}: {detail}",
}


def _unsupported_version(value: object) -> Reason:
    message = _MESSAGES[ReasonCode.UNSUPPORTED_VERSION].format(value=show(value))
    return Reason(ReasonCode.UNSUPPORTED_VERSION, message, "v")


def _precheck_ts(value: object) -> tuple[datetime | None, Reason | None]:
    """The timestamp in UTC, or the reason pydantic must not convert it.

    Parse errors are left to pydantic; this catches the two cases it gets wrong.
    """
    if not isinstance(value, str):
        return None, None
    try:
        parsed = _TS_ADAPTER.validate_json(json.dumps(value), strict=True)
    except ValidationError:
        return None, None
    if parsed.tzinfo is None:
        return None, Reason(
            ReasonCode.MISSING_UTC_OFFSET,
            f"ts {show(value)} has no UTC offset; write it with Z or +hh:mm",
            "ts",
        )
    try:
        return parsed.astimezone(UTC), None
    except OverflowError:
        return None, Reason(
            ReasonCode.INVALID_TIMESTAMP,
            f"ts {show(value)} is outside the representable range in UTC",
            "ts",
        )


def _salvage(obj: dict[str, Any], bad: set[str | None], ts: datetime | None) -> Fields:
    def number(name: str) -> float | None:
        value = obj.get(name)
        if name in bad or isinstance(value, bool) or not isinstance(value, int | float):
            return None
        try:
            result = float(value)
        except OverflowError:
            return None
        return result if math.isfinite(result) else None

    state = obj.get("state")
    seq = _bigint(obj.get("seq"))
    return Fields(
        turbine_id=None if "turbine_id" in bad else turbine_id_of(obj),
        ts=None if "ts" in bad else ts,
        seq=seq if "seq" not in bad and seq is not None and seq >= 0 else None,
        state=(TurbineState(state) if "state" not in bad and state in _STATES else None),
        **{name: number(name) for name in NUMBER_FIELDS},
    )


def _bigint(value: object) -> int | None:
    if type(value) is int and BIGINT_MIN <= value <= BIGINT_MAX:
        return value
    return None


def _unique(reasons: list[Reason]) -> list[Reason]:
    seen: set[tuple[ReasonCode, str | None]] = set()
    unique = []
    for reason in reasons:
        if (reason.code, reason.field) not in seen:
            seen.add((reason.code, reason.field))
            unique.append(reason)
    return unique


def _field_order(reason: Reason) -> int:
    # Schema order first, then unknown fields: the list reads like the message.
    field = reason.field
    return FIELD_NAMES.index(field) if field in FIELD_NAMES else len(FIELD_NAMES)


def is_non_finite(value: object) -> bool:
    return isinstance(value, float) and not math.isfinite(value)


_JSON_KINDS: Final = (
    (bool, "a boolean"),  # before int: bool is an int in Python
    (int, "an integer"),
    (float, "a number"),
    (str, "a string"),
    (list, "an array"),
    (dict, "an object"),
)


def json_kind(value: object) -> str:
    if value is None:
        return "null"
    return next((name for kind, name in _JSON_KINDS if isinstance(value, kind)), "a value")


def show(value: object) -> str:
    """A short, storable rendering of a value from a payload."""
    if isinstance(value, str):
        return f"'{printable(value, 40)}'"
    if isinstance(value, bool | int | float) or value is None:
        return printable(json.dumps(value), 40)
    return json_kind(value)
