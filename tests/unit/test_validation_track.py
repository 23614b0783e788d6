"""Unit tests of windpark.validation: soft checks, quality flags and the per-turbine track."""

from __future__ import annotations

import copy
import dataclasses
import json
import random
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from windpark.contract import Reading, TurbineState, format_ts
from windpark.turbine_model import air_density_kg_m3, load_model
from windpark.validation import (
    DEFAULT_LIMITS,
    NO_FLAGS,
    Outcome,
    QualityFlag,
    TurbineInfo,
    TurbineTrack,
    Verdict,
    judge,
    track_from_history,
)

NOW = datetime(2026, 11, 28, 18, 0, 0, tzinfo=UTC)
T0 = NOW - timedelta(hours=1)
MODEL = load_model("E-82/2300")
RATED = MODEL.rated_power_kw
TURBINE = "WTG-SOFT"
TURBINES = {TURBINE: TurbineInfo(TURBINE, MODEL)}
BAND = DEFAULT_LIMITS.power_band_fraction_of_rated * RATED

SPIKE = QualityFlag.SPIKE
STUCK = QualityFlag.STUCK_SENSOR
MISMATCH = QualityFlag.POWER_WIND_MISMATCH


def curve_kw(wind_speed_ms: float, temperature_c: float = 15.0) -> float:
    return MODEL.power_kw(wind_speed_ms, air_density_kg_m3(temperature_c))


def make_fields(i: int = 0, **overrides: Any) -> dict[str, Any]:
    """The i-th reading of an honest running turbine, one a second.

    Wind and temperature drift a little from one reading to the next, as real ones do,
    so that no value repeats unless a test says so; power follows the curve.
    """
    wind = overrides.pop("wind_speed_ms", 9.0 + 0.01 * i)
    temperature = overrides.pop("temperature_c", 15.0 + 0.001 * i)
    fields: dict[str, Any] = {
        "v": 1,
        "turbine_id": TURBINE,
        "ts": format_ts(T0 + timedelta(seconds=i)),
        "seq": i + 1,
        "power_kw": curve_kw(wind, temperature),
        "wind_speed_ms": wind,
        "temperature_c": temperature,
        "state": "running",
    }
    fields.update(overrides)
    return fields


def make_payload(i: int = 0, **overrides: Any) -> bytes:
    return json.dumps(make_fields(i, **overrides)).encode()


def make_reading(i: int = 0, **overrides: Any) -> Reading:
    return Reading.model_validate_json(make_payload(i, **overrides))


def check(raw: bytes, track: TurbineTrack | None = None) -> Verdict:
    return judge(raw, now=NOW, turbines=TURBINES, track=track, claimed_turbine_id=TURBINE)


def run(payloads: Iterable[bytes], track: TurbineTrack | None = None) -> list[Verdict]:
    """Judge a series the way the concentrator does: each verdict's track feeds the next."""
    verdicts = []
    for raw in payloads:
        verdict = check(raw, track)
        track = verdict.track
        verdicts.append(verdict)
    return verdicts


def flags_of(verdicts: list[Verdict]) -> list[QualityFlag]:
    return [verdict.flags for verdict in verdicts]


def honest(n: int, start: int = 0) -> list[bytes]:
    return [make_payload(i) for i in range(start, start + n)]


def test_an_honest_series_has_no_flags() -> None:
    verdicts = run(honest(30))
    assert {v.outcome for v in verdicts} == {Outcome.ACCEPTED}
    assert verdicts[-1].track is not None
    assert verdicts[-1].track.last_seq == 30


def test_flagged_readings_are_kept_with_their_flags() -> None:
    verdict = check(make_payload(power_kw=curve_kw(9.0) + 2 * BAND))
    assert verdict.outcome is Outcome.FLAGGED
    assert verdict.flags == MISMATCH
    assert verdict.reading is not None
    assert verdict.reasons == ()
    assert verdict.track is not None


# POWER_WIND_MISMATCH ------------------------------------------------------------------------


def band(expected_kw: float) -> float:
    return BAND + DEFAULT_LIMITS.power_band_fraction_of_expected * expected_kw


@pytest.mark.parametrize(
    ("overrides", "flagged"),
    [
        ({"power_kw": curve_kw(9.0) + band(curve_kw(9.0)) + 1}, True),
        ({"power_kw": curve_kw(9.0) - band(curve_kw(9.0)) - 1}, True),
        # The simulator's honest noise: 0.10 * rated + 0.10 * curve.
        ({"power_kw": curve_kw(9.0) + 0.1 * RATED + 0.1 * curve_kw(9.0)}, False),
        ({"power_kw": curve_kw(9.0) - 0.1 * RATED - 0.1 * curve_kw(9.0)}, False),
        # Air density: cold air gives more power at the same wind.
        ({"temperature_c": -30.0, "power_kw": curve_kw(9.0, -30.0) + 0.2 * RATED}, False),
        ({"state": "idle", "wind_speed_ms": 1.5, "power_kw": 0.05 * RATED}, True),
        ({"state": "idle", "wind_speed_ms": 1.5, "power_kw": 0.01 * RATED}, False),
        ({"state": "idle", "wind_speed_ms": 1.5, "power_kw": -0.02 * RATED}, False),
        ({"state": "fault", "power_kw": 0.0}, False),
        ({"state": "maintenance", "power_kw": 0.5 * RATED}, True),
        ({"state": "storm", "wind_speed_ms": 27.0, "power_kw": 0.0}, False),
        ({"state": "storm", "wind_speed_ms": 27.0, "power_kw": RATED}, True),
        # Running above cut-out: the turbine has not stopped yet, rated is plausible.
        ({"wind_speed_ms": 26.0, "power_kw": curve_kw(20.0)}, False),
        ({"state": "curtailed", "setpoint_kw": 500.0, "power_kw": 500.0}, False),
        ({"state": "curtailed", "setpoint_kw": 500.0, "power_kw": 100.0}, False),
        ({"state": "curtailed", "setpoint_kw": 500.0, "power_kw": 500 + band(500) + 1}, True),
        # Without a set-point a curtailed turbine is held to the curve as a cap.
        ({"state": "curtailed", "power_kw": 900.0}, False),
        ({"state": "curtailed", "power_kw": curve_kw(9.0) + band(curve_kw(9.0)) + 1}, True),
    ],
)
def test_power_wind_mismatch(overrides: dict[str, Any], flagged: bool) -> None:
    verdict = check(make_payload(**overrides))
    assert verdict.outcome is not Outcome.REJECTED, verdict.reasons
    assert (MISMATCH in verdict.flags) is flagged


# SPIKE --------------------------------------------------------------------------------------


def test_power_spike_and_recovery() -> None:
    wind = 6.0
    spike = curve_kw(wind) + 0.6 * RATED
    payloads = [
        *(make_payload(i, wind_speed_ms=wind + 0.01 * i) for i in range(5)),
        make_payload(5, wind_speed_ms=wind + 0.05, power_kw=spike),
        make_payload(6, wind_speed_ms=wind + 0.06),
        make_payload(7, wind_speed_ms=wind + 0.07),
    ]
    flags = flags_of(run(payloads))
    assert SPIKE in flags[5]
    # Compared with the last good value, not with the spike: no flag on the way back.
    assert flags[6] == NO_FLAGS
    assert flags[7] == NO_FLAGS


def test_wind_spike_and_recovery() -> None:
    payloads = [
        *honest(5),
        make_payload(5, wind_speed_ms=22.0, power_kw=curve_kw(9.05)),
        *honest(3, start=6),
    ]
    flags = flags_of(run(payloads))
    assert SPIKE in flags[5]
    assert flags[6:] == [NO_FLAGS] * 3


def test_a_spike_across_a_sequence_gap_is_still_a_spike() -> None:
    payloads = [make_payload(i, wind_speed_ms=6.0 + 0.01 * i) for i in range(3)]
    payloads.append(make_payload(4, wind_speed_ms=6.0, power_kw=curve_kw(6.0) + 0.6 * RATED))
    flags = run(payloads)[-1].flags
    assert SPIKE in flags
    assert QualityFlag.SEQ_GAP in flags


@pytest.mark.parametrize(
    ("before", "after"),
    [
        # A trip: a running turbine at rated stops, power drops to exactly zero.
        ({"wind_speed_ms": 14.0}, {"wind_speed_ms": 14.1, "state": "fault", "power_kw": 0.0}),
        ({"wind_speed_ms": 24.9}, {"wind_speed_ms": 25.2, "state": "storm", "power_kw": 0.0}),
        # A restart after a fault, straight back onto the curve.
        (
            {"wind_speed_ms": 14.0, "state": "fault", "power_kw": 0.0},
            {"wind_speed_ms": 14.1},
        ),
        # A new curtailment set-point, and its release.
        (
            {"wind_speed_ms": 14.0},
            {"wind_speed_ms": 14.1, "state": "curtailed", "setpoint_kw": 800, "power_kw": 800},
        ),
        (
            {"wind_speed_ms": 14.0, "state": "curtailed", "setpoint_kw": 800, "power_kw": 800},
            {"wind_speed_ms": 14.1},
        ),
        # A strong gust, with the power following the curve.
        ({"wind_speed_ms": 8.0}, {"wind_speed_ms": 11.5}),
        ({"wind_speed_ms": 11.5}, {"wind_speed_ms": 8.0}),
    ],
)
def test_state_changes_and_gusts_are_not_spikes(
    before: dict[str, Any], after: dict[str, Any]
) -> None:
    verdicts = run([make_payload(0, **before), make_payload(1, **after)])
    assert flags_of(verdicts) == [NO_FLAGS, NO_FLAGS]


def test_readings_far_apart_are_not_compared() -> None:
    payloads = [
        make_payload(0, wind_speed_ms=5.0),
        make_payload(120, seq=2, wind_speed_ms=5.1, power_kw=curve_kw(5.1) + 0.2 * RATED),
        make_payload(240, seq=3, wind_speed_ms=20.0),
    ]
    assert flags_of(run(payloads)) == [NO_FLAGS] * 3


# STUCK_SENSOR -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "channel",
    [
        {"temperature_c": 4.2},
        {"wind_speed_ms": 7.3},
        {"power_kw": 1000.0},
    ],
)
def test_stuck_from_the_third_identical_value(channel: dict[str, Any]) -> None:
    flags = flags_of(run(make_payload(i, **channel) for i in range(5)))
    assert flags == [NO_FLAGS, NO_FLAGS, STUCK, STUCK, STUCK]


def test_stuck_ends_when_the_value_moves() -> None:
    payloads = [make_payload(i, temperature_c=4.2) for i in range(3)] + honest(2, start=3)
    assert flags_of(run(payloads)) == [NO_FLAGS, NO_FLAGS, STUCK, NO_FLAGS, NO_FLAGS]


@pytest.mark.parametrize(
    "series",
    [
        # The rated plateau: the curve gives the same power for every wind above rated.
        [{"wind_speed_ms": 15.0 + 0.1 * i} for i in range(5)],
        [{"wind_speed_ms": 15.0 + 0.1 * i, "power_kw": RATED} for i in range(5)],
        # A stopped turbine reads zero power, and calm air zero wind.
        [{"state": "idle", "wind_speed_ms": 1.0 + 0.1 * i, "power_kw": 0.0} for i in range(5)],
        [{"state": "idle", "wind_speed_ms": 0.0, "power_kw": -3.0 - i} for i in range(5)],
        # A curtailed turbine holds its set-point.
        [
            {
                "state": "curtailed",
                "wind_speed_ms": 12 + 0.1 * i,
                "setpoint_kw": 1000.0,
                "power_kw": 1000.0,
            }
            for i in range(5)
        ],
    ],
    ids=["rated-curve", "rated-exact", "idle-zero-power", "calm", "curtailed-setpoint"],
)
def test_plateaus_are_not_stuck(series: list[dict[str, Any]]) -> None:
    flags = flags_of(run(make_payload(i, **fields) for i, fields in enumerate(series)))
    assert flags == [NO_FLAGS] * len(series)


# Sequence: SEQ_GAP, OUT_OF_ORDER, SEQ_RESET, duplicates. -----------------------------------


def test_seq_gap() -> None:
    payloads = [make_payload(0), make_payload(1), make_payload(4), make_payload(5)]
    assert flags_of(run(payloads)) == [NO_FLAGS, NO_FLAGS, QualityFlag.SEQ_GAP, NO_FLAGS]


def test_out_of_order_does_not_move_the_track_back() -> None:
    payloads = [make_payload(0), make_payload(1), make_payload(3), make_payload(2)]
    verdicts = run(payloads)
    assert flags_of(verdicts) == [NO_FLAGS, NO_FLAGS, QualityFlag.SEQ_GAP, QualityFlag.OUT_OF_ORDER]
    assert verdicts[3].outcome is Outcome.FLAGGED
    assert verdicts[3].track is verdicts[2].track
    # The next reading continues from seq 4: no gap, no flag.
    assert check(make_payload(4), verdicts[3].track).flags == NO_FLAGS


def test_out_of_order_reading_is_still_checked_against_the_curve() -> None:
    verdicts = run([make_payload(0), make_payload(2), make_payload(1, power_kw=0.9 * RATED)])
    assert verdicts[2].flags == QualityFlag.OUT_OF_ORDER | MISMATCH


def test_out_of_order_by_time_with_a_higher_seq() -> None:
    verdicts = run([make_payload(0), make_payload(2), make_payload(1, seq=4)])
    assert verdicts[2].flags == QualityFlag.OUT_OF_ORDER
    assert verdicts[2].track is verdicts[1].track


def test_seq_reset_flags_one_reading_and_moves_on() -> None:
    payloads = [make_payload(i, seq=100 + i) for i in range(3)]
    payloads += [make_payload(3, seq=0), make_payload(4, seq=1), make_payload(5, seq=2)]
    flags = flags_of(run(payloads))
    assert flags == [NO_FLAGS] * 3 + [QualityFlag.SEQ_RESET, NO_FLAGS, NO_FLAGS]


def test_duplicate_delivery_has_no_flags_and_keeps_the_track() -> None:
    first, second = run(honest(2))
    again = check(make_payload(1), second.track)
    assert again.outcome is Outcome.ACCEPTED
    assert again.track is second.track
    # Same (turbine, ts) with other values is still the stored reading's duplicate.
    odd = check(make_payload(1, power_kw=0.9 * RATED, seq=99), second.track)
    assert odd.flags == NO_FLAGS
    assert odd.track is second.track
    assert first.track is not second.track


def test_rejects_leave_the_track_alone() -> None:
    (verdict,) = run(honest(1))
    rejected = check(make_payload(1, power_kw=float("nan")), verdict.track)
    assert rejected.outcome is Outcome.REJECTED
    assert rejected.track is verdict.track


def test_a_track_of_another_turbine_is_a_caller_bug() -> None:
    (verdict,) = run(honest(1))
    assert verdict.track is not None
    other = dataclasses.replace(verdict.track, turbine_id="WTG-ELSEWHERE")
    with pytest.raises(ValueError, match="track of 'WTG-ELSEWHERE'"):
        check(make_payload(1), other)


# Rebuilding the track after a restart. ----------------------------------------------------


def test_track_from_history_equals_the_live_track() -> None:
    rows = [make_reading(i) for i in range(6)]
    live = run(make_payload(i) for i in range(6))[-1].track
    assert track_from_history(rows, model=MODEL) == live
    assert track_from_history(list(reversed(rows)), model=MODEL) == live
    assert track_from_history(rows) == live


def test_track_from_history_edge_cases() -> None:
    assert track_from_history([]) is None
    with pytest.raises(ValueError, match="one turbine"):
        track_from_history([make_reading(0), make_reading(1, turbine_id="WTG-SOFT2")])


def test_rebuilt_track_continues_the_checks() -> None:
    rows = [make_reading(i, temperature_c=3.3) for i in range(2)]
    track = track_from_history(rows, model=MODEL)
    assert check(make_payload(2, temperature_c=3.3), track).flags == STUCK
    assert check(make_payload(3), track).flags == QualityFlag.SEQ_GAP


def test_rebuilt_track_does_not_take_a_stored_spike_as_reference() -> None:
    wind = 6.0
    rows = [make_reading(i, wind_speed_ms=wind + 0.01 * i) for i in range(4)]
    rows.append(make_reading(4, wind_speed_ms=wind + 0.04, power_kw=curve_kw(wind) + 0.6 * RATED))
    track = track_from_history(rows, model=MODEL)
    assert track is not None
    assert track.good_power == rows[3]
    assert check(make_payload(5, wind_speed_ms=wind + 0.05), track).flags == NO_FLAGS


# Purity. --------------------------------------------------------------------------------------


def test_judge_mutates_nothing() -> None:
    (first,) = run(honest(1))
    track = first.track
    assert track is not None
    turbines = dict(TURBINES)
    before = (copy.deepcopy(track), copy.deepcopy(turbines))
    raw = make_payload(1, temperature_c=track.last.temperature_c)
    verdict = judge(raw, now=NOW, turbines=turbines, track=track, claimed_turbine_id=TURBINE)
    assert (track, turbines) == before
    assert verdict.track is not track
    assert track.last_seq == 1
    with pytest.raises(dataclasses.FrozenInstanceError):
        track.last = track.last  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        verdict.flags = NO_FLAGS  # type: ignore[misc]


def test_same_input_same_verdict() -> None:
    (first,) = run(honest(1))
    raw = make_payload(1, power_kw=0.9 * RATED)
    assert check(raw, first.track) == check(raw, first.track)


# Property-ish: honest random readings are never rejected or flagged. ---------------------------


def honest_state(wind: float) -> TurbineState:
    if wind < MODEL.cut_in_ms:
        return TurbineState.IDLE
    if wind >= MODEL.cut_out_ms:
        return TurbineState.STORM
    return TurbineState.RUNNING


def honest_power(rng: random.Random, state: TurbineState, expected: float) -> float:
    if state is not TurbineState.RUNNING and state is not TurbineState.CURTAILED:
        return rng.uniform(-0.01, 0.01) * RATED
    noise = 0.1 * RATED + 0.1 * expected  # the simulator's bound
    power = expected + rng.uniform(-noise, noise)
    return min(max(power, -0.02 * RATED), 1.10 * RATED)


def test_random_honest_readings_are_accepted() -> None:
    rng = random.Random(61400)
    for i in range(500):
        wind = rng.uniform(0.0, 30.0)
        temperature = rng.uniform(-30.0, 40.0)
        state = honest_state(wind)
        extra: dict[str, Any] = {}
        expected = curve_kw(min(wind, 24.99), temperature)
        if state is TurbineState.RUNNING and rng.random() < 0.2:
            state = TurbineState.CURTAILED
            extra["setpoint_kw"] = rng.uniform(0.1, 1.0) * RATED
            expected = min(expected, extra["setpoint_kw"])
        if state is not TurbineState.RUNNING and state is not TurbineState.CURTAILED:
            expected = 0.0
        if rng.random() < 0.5:
            extra |= {
                "rotor_rpm": rng.uniform(0, 18),
                "pitch_deg": rng.uniform(-2, 90),
                "nacelle_temperature_c": temperature + rng.uniform(0, 25),
                "wind_direction_deg": rng.uniform(0, 360),
            }
        raw = make_payload(
            i,
            ts=format_ts(NOW - timedelta(seconds=rng.uniform(-30, 7 * 86400))),
            wind_speed_ms=wind,
            temperature_c=temperature,
            state=str(state),
            power_kw=honest_power(rng, state, expected),
            **extra,
        )
        verdict = check(raw)
        assert verdict.outcome is Outcome.ACCEPTED, (raw, verdict.reasons, verdict.flags)


def test_a_long_honest_series_has_no_flags() -> None:
    rng = random.Random(12)
    wind, temperature = 9.0, 10.0
    payloads = []
    for i in range(2000):
        # Mean-reverting turbulence with a standard deviation of about 2 m/s.
        wind = min(max(wind + rng.gauss(0, 0.3) + 0.02 * (9.0 - wind), 0.0), 40.0)
        temperature += rng.gauss(0, 0.01)
        state = honest_state(wind)
        expected = curve_kw(wind, temperature) if state is TurbineState.RUNNING else 0.0
        payloads.append(
            make_payload(
                i,
                wind_speed_ms=wind,
                temperature_c=temperature,
                state=str(state),
                power_kw=honest_power(rng, state, expected),
            )
        )
    verdicts = run(payloads)
    odd = [
        (i, v.flags, v.reasons) for i, v in enumerate(verdicts) if v.outcome is not Outcome.ACCEPTED
    ]
    assert odd == []
