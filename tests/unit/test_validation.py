"""Unit tests of windpark.validation: hard checks (reject codes) and message decoding."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from windpark.contract import MAX_MESSAGE_BYTES, Reading
from windpark.turbine_model import air_density_kg_m3, load_model
from windpark.validation import (
    DEFAULT_LIMITS,
    NO_FLAGS,
    Limits,
    Outcome,
    QualityFlag,
    ReasonCode,
    TurbineInfo,
    Verdict,
    judge,
    judge_reading,
    peek_turbine_id,
)
from windpark.validation.decoding import code_for_error

NOW = datetime(2026, 11, 28, 18, 0, 0, tzinfo=UTC)
MODEL = load_model("E-82/2300")
RATED = MODEL.rated_power_kw
TURBINE = "WTG-HARD"
OTHER = "WTG-HARD2"
TURBINES = {TURBINE: TurbineInfo(TURBINE, MODEL), OTHER: TurbineInfo(OTHER, MODEL)}
MISSING: Any = object()  # an override that removes the field


def curve_kw(wind_speed_ms: float, temperature_c: float = 15.0) -> float:
    return MODEL.power_kw(wind_speed_ms, air_density_kg_m3(temperature_c))


def make_fields(**overrides: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "v": 1,
        "turbine_id": TURBINE,
        "ts": "2026-11-28T17:59:59.000Z",
        "seq": 1,
        "power_kw": round(curve_kw(9.0), 1),
        "wind_speed_ms": 9.0,
        "temperature_c": 15.0,
        "state": "running",
    }
    fields.update(overrides)
    return {key: value for key, value in fields.items() if value is not MISSING}


def make_payload(**overrides: Any) -> bytes:
    # json, not orjson: it writes NaN and Infinity, which is what a faulty sender does.
    return json.dumps(make_fields(**overrides)).encode()


def make_reading(**overrides: Any) -> Reading:
    return Reading.model_validate_json(make_payload(**overrides))


def check(raw: bytes, *, claimed: str | None = TURBINE, now: datetime = NOW) -> Verdict:
    return judge(raw, now=now, turbines=TURBINES, track=None, claimed_turbine_id=claimed)


def codes(verdict: Verdict) -> set[ReasonCode]:
    return {reason.code for reason in verdict.reasons}


def ts(delta_s: float) -> str:
    return (NOW + timedelta(seconds=delta_s)).isoformat().replace("+00:00", "Z")


def test_a_plain_reading_is_accepted() -> None:
    verdict = check(make_payload())
    assert verdict.outcome is Outcome.ACCEPTED
    assert verdict.reasons == ()
    assert verdict.flags == NO_FLAGS
    assert verdict.reading == make_reading()
    assert (verdict.turbine_id, verdict.seq) == (TURBINE, 1)
    assert verdict.track is not None
    assert verdict.track.last == verdict.reading


# One crafted message per reject code. ------------------------------------------------------


class Case(NamedTuple):
    code: ReasonCode
    raw: bytes
    field: str | None
    claimed: str | None = None  # the identity the transport vouches for


REJECTS: list[Case] = [
    Case(ReasonCode.OVERSIZED, b" " * MAX_MESSAGE_BYTES + make_payload(), None),
    Case(ReasonCode.MALFORMED_JSON, make_payload()[:-1], None),
    Case(ReasonCode.MALFORMED_JSON, b"\xff" + make_payload(), None),
    Case(ReasonCode.MALFORMED_JSON, "\ufeff".encode() + make_payload(), None),
    Case(ReasonCode.MALFORMED_JSON, make_payload() + b" {}", None),
    Case(ReasonCode.MALFORMED_JSON, b"", None),
    Case(ReasonCode.MALFORMED_JSON, b"[" * 5000, None),
    # json accepts these, pydantic's parser does not: a lone surrogate and deep nesting.
    Case(ReasonCode.MALFORMED_JSON, make_payload(note="\ud800"), None),
    Case(ReasonCode.MALFORMED_JSON, make_payload(note=json.loads("[" * 300 + "]" * 300)), None),
    Case(ReasonCode.NOT_AN_OBJECT, b"[1, 2]", None),
    Case(ReasonCode.NOT_AN_OBJECT, b'"reading"', None),
    Case(ReasonCode.NOT_AN_OBJECT, b"null", None),
    Case(ReasonCode.NOT_AN_OBJECT, b"42", None),
    Case(ReasonCode.UNSUPPORTED_VERSION, make_payload(v=2), "v"),
    Case(ReasonCode.UNSUPPORTED_VERSION, make_payload(v=MISSING), "v"),
    Case(ReasonCode.UNSUPPORTED_VERSION, make_payload(v=True), "v"),
    Case(ReasonCode.UNSUPPORTED_VERSION, make_payload(v=1.0), "v"),
    Case(ReasonCode.UNSUPPORTED_VERSION, make_payload(v="1"), "v"),
    Case(ReasonCode.MISSING_FIELD, make_payload(turbine_id=MISSING), "turbine_id"),
    Case(ReasonCode.MISSING_FIELD, make_payload(ts=MISSING), "ts"),
    Case(ReasonCode.MISSING_FIELD, make_payload(seq=MISSING), "seq"),
    Case(ReasonCode.MISSING_FIELD, make_payload(power_kw=MISSING), "power_kw"),
    Case(ReasonCode.MISSING_FIELD, make_payload(wind_speed_ms=MISSING), "wind_speed_ms"),
    Case(ReasonCode.MISSING_FIELD, make_payload(temperature_c=MISSING), "temperature_c"),
    Case(ReasonCode.MISSING_FIELD, make_payload(state=MISSING), "state"),
    Case(ReasonCode.UNKNOWN_FIELD, make_payload(power_w=1.0), "power_w"),
    Case(ReasonCode.DUPLICATE_FIELD, make_payload()[:-1] + b', "power_kw": 1.0}', "power_kw"),
    # Strings are never numbers, floats are never integers, booleans are neither.
    Case(ReasonCode.WRONG_TYPE, make_payload(power_kw="812.5"), "power_kw"),
    Case(ReasonCode.WRONG_TYPE, make_payload(power_kw=True), "power_kw"),
    Case(ReasonCode.WRONG_TYPE, make_payload(wind_speed_ms=[9.0]), "wind_speed_ms"),
    Case(ReasonCode.WRONG_TYPE, make_payload(temperature_c=None), "temperature_c"),
    Case(ReasonCode.WRONG_TYPE, make_payload(rotor_rpm="12"), "rotor_rpm"),
    Case(ReasonCode.WRONG_TYPE, make_payload(seq=1.0), "seq"),
    Case(ReasonCode.WRONG_TYPE, make_payload(seq="1"), "seq"),
    Case(ReasonCode.WRONG_TYPE, make_payload(turbine_id=7), "turbine_id"),
    Case(ReasonCode.WRONG_TYPE, make_payload(ts=1764352799), "ts"),
    Case(ReasonCode.WRONG_TYPE, make_payload(state=1), "state"),
    Case(ReasonCode.NON_FINITE, make_payload(power_kw=float("nan")), "power_kw"),
    Case(ReasonCode.NON_FINITE, make_payload(wind_speed_ms=float("inf")), "wind_speed_ms"),
    Case(ReasonCode.NON_FINITE, make_payload(temperature_c=float("-inf")), "temperature_c"),
    Case(ReasonCode.NON_FINITE, make_payload(pitch_deg=float("nan")), "pitch_deg"),
    Case(ReasonCode.NON_FINITE, make_payload()[:-1] + b', "setpoint_kw": 1e400}', "setpoint_kw"),
    Case(ReasonCode.NON_FINITE, make_payload(seq=float("nan")), "seq"),
    Case(ReasonCode.INVALID_TURBINE_ID, make_payload(turbine_id="WTG 01"), "turbine_id"),
    Case(ReasonCode.INVALID_TURBINE_ID, make_payload(turbine_id=""), "turbine_id"),
    Case(ReasonCode.INVALID_TURBINE_ID, make_payload(turbine_id="W" * 65), "turbine_id"),
    Case(ReasonCode.INVALID_TURBINE_ID, make_payload(turbine_id=TURBINE + "\n"), "turbine_id"),
    Case(ReasonCode.INVALID_SEQ, make_payload(seq=-1), "seq"),
    Case(ReasonCode.INVALID_SEQ, make_payload(seq=2**63), "seq"),
    Case(ReasonCode.INVALID_STATE, make_payload(state="flying"), "state"),
    Case(ReasonCode.INVALID_STATE, make_payload(state="RUNNING"), "state"),
    Case(ReasonCode.INVALID_TIMESTAMP, make_payload(ts="2026-13-28T17:59:59Z"), "ts"),
    Case(ReasonCode.INVALID_TIMESTAMP, make_payload(ts="yesterday"), "ts"),
    Case(ReasonCode.INVALID_TIMESTAMP, make_payload(ts="2026-11-28"), "ts"),
    Case(ReasonCode.INVALID_TIMESTAMP, make_payload(ts="2026-11-28T17:59:59+01"), "ts"),
    # pydantic's validator would raise OverflowError converting these to UTC.
    Case(ReasonCode.INVALID_TIMESTAMP, make_payload(ts="0001-01-01T00:00:00+01:00"), "ts"),
    Case(ReasonCode.INVALID_TIMESTAMP, make_payload(ts="9999-12-31T23:59:59-01:00"), "ts"),
    Case(ReasonCode.MISSING_UTC_OFFSET, make_payload(ts="2026-11-28T17:59:59"), "ts"),
    Case(ReasonCode.MISSING_UTC_OFFSET, make_payload(ts="2026-11-28 17:59:59.500"), "ts"),
    Case(ReasonCode.FUTURE_TIMESTAMP, make_payload(ts=ts(31)), "ts"),
    Case(ReasonCode.STALE_TIMESTAMP, make_payload(ts=ts(-7 * 86400 - 1)), "ts"),
    Case(ReasonCode.UNKNOWN_TURBINE, make_payload(turbine_id="WTG-NOPE"), "turbine_id"),
    Case(ReasonCode.TURBINE_MISMATCH, make_payload(turbine_id=OTHER), "turbine_id", TURBINE),
    Case(ReasonCode.POWER_OUT_OF_RANGE, make_payload(power_kw=1.11 * RATED), "power_kw"),
    Case(ReasonCode.POWER_OUT_OF_RANGE, make_payload(power_kw=-0.03 * RATED), "power_kw"),
    Case(ReasonCode.WIND_OUT_OF_RANGE, make_payload(wind_speed_ms=-0.1), "wind_speed_ms"),
    Case(ReasonCode.WIND_OUT_OF_RANGE, make_payload(wind_speed_ms=60.1), "wind_speed_ms"),
    Case(ReasonCode.TEMPERATURE_OUT_OF_RANGE, make_payload(temperature_c=-50.1), "temperature_c"),
    Case(ReasonCode.TEMPERATURE_OUT_OF_RANGE, make_payload(temperature_c=60.1), "temperature_c"),
    Case(ReasonCode.ROTOR_RPM_OUT_OF_RANGE, make_payload(rotor_rpm=-1.0), "rotor_rpm"),
    Case(ReasonCode.ROTOR_RPM_OUT_OF_RANGE, make_payload(rotor_rpm=61.0), "rotor_rpm"),
    Case(ReasonCode.PITCH_OUT_OF_RANGE, make_payload(pitch_deg=96.0), "pitch_deg"),
    Case(
        ReasonCode.NACELLE_TEMPERATURE_OUT_OF_RANGE,
        make_payload(nacelle_temperature_c=101.0),
        "nacelle_temperature_c",
    ),
    Case(
        ReasonCode.WIND_DIRECTION_OUT_OF_RANGE,
        make_payload(wind_direction_deg=360.5),
        "wind_direction_deg",
    ),
    Case(ReasonCode.SETPOINT_OUT_OF_RANGE, make_payload(setpoint_kw=-1.0), "setpoint_kw"),
    Case(ReasonCode.SETPOINT_OUT_OF_RANGE, make_payload(setpoint_kw=1.2 * RATED), "setpoint_kw"),
]


@pytest.mark.parametrize("case", REJECTS, ids=[f"{c.code}-{i}" for i, c in enumerate(REJECTS)])
def test_each_reject_code(case: Case) -> None:
    verdict = check(case.raw, claimed=case.claimed)
    assert verdict.outcome is Outcome.REJECTED
    assert verdict.reading is None
    assert verdict.flags == NO_FLAGS
    assert [(r.code, r.field) for r in verdict.reasons] == [(case.code, case.field)]
    assert verdict.reasons[0].message


def test_every_reject_code_has_a_crafted_message() -> None:
    # INVALID_VALUE is the fallback for pydantic errors no rule knows; tested below.
    assert {case.code for case in REJECTS} | {ReasonCode.INVALID_VALUE} == set(ReasonCode)


def test_unknown_pydantic_error_types_map_to_invalid_value() -> None:
    assert code_for_error("some_future_error", "power_kw", 1.0) is ReasonCode.INVALID_VALUE
    assert code_for_error("some_future_error", None, None) is ReasonCode.INVALID_VALUE
    assert code_for_error("model_type", None, []) is ReasonCode.NOT_AN_OBJECT


def test_limits_are_inclusive() -> None:
    edges = [
        make_payload(ts=ts(30)),
        make_payload(ts=ts(-7 * 86400)),
        make_payload(wind_speed_ms=0.0, power_kw=0.0, state="idle"),
        make_payload(temperature_c=-50.0),
        make_payload(temperature_c=60.0),
        make_payload(power_kw=-0.02 * RATED, state="idle"),
        make_payload(power_kw=1.10 * RATED, wind_speed_ms=15.0),
        make_payload(wind_direction_deg=360.0, pitch_deg=-15.0, rotor_rpm=0.0),
        make_payload(setpoint_kw=0.0),
    ]
    for raw in edges:
        assert check(raw).outcome is not Outcome.REJECTED, raw


def test_optional_channels_may_be_null_or_absent() -> None:
    assert check(make_payload(rotor_rpm=None, setpoint_kw=None)).outcome is Outcome.ACCEPTED
    full = make_payload(
        rotor_rpm=14.1,
        pitch_deg=2.0,
        nacelle_temperature_c=25.0,
        wind_direction_deg=270.0,
        setpoint_kw=RATED,
    )
    assert check(full).outcome is Outcome.ACCEPTED


def test_timestamps_with_any_offset_are_accepted_in_utc() -> None:
    verdict = check(make_payload(ts="2026-11-28T18:59:59+01:00"))
    assert verdict.outcome is Outcome.ACCEPTED
    assert verdict.reading is not None
    assert verdict.reading.ts == NOW - timedelta(seconds=1)
    assert verdict.reading.ts.utcoffset() == timedelta(0)


# Several faults in one message. -----------------------------------------------------------


def test_all_faults_are_listed_not_only_the_first() -> None:
    raw = make_payload(
        v=MISSING,
        seq=MISSING,
        power_kw=float("nan"),
        wind_speed_ms=75.0,
        temperature_c="warm",
        ts="2026-11-28T17:59:59",
        extra=1,
    )
    verdict = check(raw)
    assert [(r.code, r.field) for r in verdict.reasons] == [
        (ReasonCode.UNSUPPORTED_VERSION, "v"),
        (ReasonCode.MISSING_UTC_OFFSET, "ts"),
        (ReasonCode.MISSING_FIELD, "seq"),
        (ReasonCode.NON_FINITE, "power_kw"),
        (ReasonCode.WRONG_TYPE, "temperature_c"),
        (ReasonCode.UNKNOWN_FIELD, "extra"),
        (ReasonCode.WIND_OUT_OF_RANGE, "wind_speed_ms"),
    ]


def test_values_are_checked_when_the_timestamp_overflows() -> None:
    raw = make_payload(ts="0001-01-01T00:00:00+01:00", power_kw=float("nan"), wind_speed_ms=-3)
    assert codes(check(raw)) == {
        ReasonCode.INVALID_TIMESTAMP,
        ReasonCode.NON_FINITE,
        ReasonCode.WIND_OUT_OF_RANGE,
    }


def test_values_are_checked_when_the_identity_is_wrong() -> None:
    raw = make_payload(turbine_id="WTG-NOPE", ts=ts(3600), temperature_c=99.0)
    assert codes(check(raw)) == {
        ReasonCode.TURBINE_MISMATCH,
        ReasonCode.UNKNOWN_TURBINE,
        ReasonCode.FUTURE_TIMESTAMP,
        ReasonCode.TEMPERATURE_OUT_OF_RANGE,
    }


def test_power_is_checked_against_the_model_of_a_mismatched_turbine() -> None:
    raw = make_payload(turbine_id=OTHER, power_kw=2 * RATED)
    assert codes(check(raw)) == {ReasonCode.TURBINE_MISMATCH, ReasonCode.POWER_OUT_OF_RANGE}


# Who a reject is filed under. --------------------------------------------------------------


def test_reject_is_filed_under_the_claimed_turbine() -> None:
    verdict = check(make_payload(turbine_id=OTHER, seq=7))
    assert (verdict.turbine_id, verdict.seq) == (TURBINE, 7)


def test_reject_without_claim_is_filed_under_the_body() -> None:
    verdict = check(make_payload(power_kw=float("nan"), seq=8), claimed=None)
    assert (verdict.turbine_id, verdict.seq) == (TURBINE, 8)


def test_reject_with_a_malformed_claim_is_a_mismatch_filed_under_the_body() -> None:
    verdict = check(make_payload(), claimed="a.b")
    assert codes(verdict) == {ReasonCode.TURBINE_MISMATCH}
    assert verdict.turbine_id == TURBINE


def test_oversized_message_is_not_parsed() -> None:
    raw = make_payload(note="x" * MAX_MESSAGE_BYTES)
    assert check(raw, claimed=None).turbine_id is None
    assert check(raw).turbine_id == TURBINE


def test_best_effort_seq_keeps_invalid_integers_that_fit_a_bigint() -> None:
    assert check(make_payload(seq=-5)).seq == -5
    assert check(make_payload(seq=2**63)).seq is None
    assert check(make_payload(seq="5")).seq is None


def test_peek_turbine_id() -> None:
    assert peek_turbine_id(make_payload()) == TURBINE
    assert peek_turbine_id(make_payload(turbine_id="bad id")) is None
    assert peek_turbine_id(b"not json") is None


# Safety of what is stored with a reject. ----------------------------------------------------


def test_reasons_are_storable_text() -> None:
    # PostgreSQL text and jsonb refuse NUL; a lone surrogate cannot be encoded at all.
    raw = make_payload(**{"bad\x00key": 1, "k" * 500: 2}, turbine_id="a\x00b", state="\x00")
    verdict = check(raw)
    assert verdict.outcome is Outcome.REJECTED
    for reason in verdict.reasons:
        for text in (reason.message, reason.field or ""):
            assert "\x00" not in text
            text.encode("utf-8")
            assert len(text) < 300
    assert ReasonCode.UNKNOWN_FIELD in codes(verdict)


@pytest.mark.parametrize(
    ("digits", "seq_code", "rpm_code"),
    [
        (30, ReasonCode.INVALID_SEQ, ReasonCode.ROTOR_RPM_OUT_OF_RANGE),
        (400, ReasonCode.INVALID_SEQ, ReasonCode.NON_FINITE),
        # pydantic's parser refuses numbers this long; python's would refuse to convert it.
        (5000, ReasonCode.MALFORMED_JSON, ReasonCode.MALFORMED_JSON),
    ],
)
def test_huge_integers(digits: int, seq_code: ReasonCode, rpm_code: ReasonCode) -> None:
    huge = b"1" + b"0" * digits
    seq = check(make_payload(seq=MISSING)[:-1] + b', "seq": ' + huge + b"}")
    assert codes(seq) == {seq_code}
    assert seq.seq is None
    rpm = check(make_payload()[:-1] + b', "rotor_rpm": ' + huge + b"}")
    assert codes(rpm) == {rpm_code}


def test_aware_now_is_required() -> None:
    with pytest.raises(ValueError, match="aware"):
        judge(make_payload(), now=NOW.replace(tzinfo=None), turbines=TURBINES, track=None)


def test_limits_refuse_nonsense() -> None:
    with pytest.raises(ValueError, match="wind_min_ms"):
        Limits(wind_min_ms=10.0, wind_max_ms=5.0)
    with pytest.raises(ValueError, match="stuck_repeats"):
        Limits(stuck_repeats=1)
    with pytest.raises(ValueError, match="max_bytes"):
        Limits(max_bytes=0)


def test_limits_are_configurable() -> None:
    strict = Limits(max_bytes=64, wind_max_ms=30.0)
    raw = make_payload(wind_speed_ms=35.0)
    loose = judge(raw, now=NOW, turbines=TURBINES, track=None)
    assert ReasonCode.WIND_OUT_OF_RANGE not in codes(loose)
    verdict = judge(raw, now=NOW, turbines=TURBINES, track=None, limits=strict)
    assert codes(verdict) == {ReasonCode.OVERSIZED}
    assert DEFAULT_LIMITS.max_bytes == MAX_MESSAGE_BYTES


# judge_reading: the same checks on an already parsed Reading. -----------------------------


def test_judge_reading_runs_the_value_and_identity_checks() -> None:
    reading = make_reading(turbine_id=OTHER, power_kw=2 * RATED)
    verdict = judge_reading(
        reading, now=NOW, turbines=TURBINES, track=None, claimed_turbine_id=TURBINE
    )
    assert codes(verdict) == {ReasonCode.TURBINE_MISMATCH, ReasonCode.POWER_OUT_OF_RANGE}
    ok = judge_reading(make_reading(), now=NOW, turbines=TURBINES, track=None)
    assert ok.outcome is Outcome.ACCEPTED
    assert ok.reading == make_reading()


# The documentation lists every code and bit. ------------------------------------------------


def test_reason_codes_doc_lists_every_code_and_flag() -> None:
    doc = (Path(__file__).parents[2] / "docs" / "reason-codes.md").read_text()
    for code in ReasonCode:
        assert f"`{code.value}`" in doc, code
    for flag in QualityFlag:
        assert f"`{flag.name}`" in doc, flag
        assert f"| {flag.value} |" in doc, flag
