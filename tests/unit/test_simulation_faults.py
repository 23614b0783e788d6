"""Fault injection: rates, kinds, and verdicts that follow the agreement.

``AgreedValidator`` below is a reference implementation of the agreement between the
simulator and the validator, written from the agreement alone (not from
``windpark.validation``): the simulator's ground truth must be exactly what it says.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import orjson
import pytest
from pydantic import ValidationError
from scipy.stats import binom

from windpark.contract import MAX_MESSAGE_BYTES, NON_PRODUCING_STATES, Reading, TurbineState, encode
from windpark.simulation import (
    Emission,
    Expected,
    FaultKind,
    FaultMix,
    GroundTruthWriter,
    ParkSimulator,
    Reliability,
    SimTurbine,
    Site,
    TruthRecord,
)
from windpark.simulation.messages import HARD_KINDS, SOFT_KINDS
from windpark.turbine_model import TurbineModel, air_density_kg_m3, load_model

E82 = load_model("E-82/2300")
START = datetime(2026, 3, 1, tzinfo=UTC)


def make_sim(
    count: int = 5,
    *,
    error_rate: float = 0.2,
    mix: FaultMix | None = None,
    site: Site | None = None,
    seed: int = 7,
    outages: bool = False,
    **overrides: object,
) -> ParkSimulator:
    reliability = (
        Reliability(mtbf_days=0.5, mean_repair_h=0.5, maintenance_interval_days=1)
        if outages
        else Reliability()
    )
    turbines = [
        SimTurbine(turbine_id=f"WTG{i:02d}", model=E82, reliability=reliability)
        for i in range(1, count + 1)
    ]
    return ParkSimulator(
        turbines=turbines,
        site=site,
        seed=seed,
        error_rate=error_rate,
        fault_mix=mix if mix is not None else FaultMix.default(),
        **overrides,  # type: ignore[arg-type]
    )


def run(sim: ParkSimulator, steps: int, start: datetime = START) -> list[tuple[datetime, Emission]]:
    out: list[tuple[datetime, Emission]] = []
    for k in range(steps):
        ts = start + timedelta(seconds=k)
        out.extend((ts, e) for e in sim.step(ts))
    out.extend((start + timedelta(seconds=steps), e) for e in sim.flush())
    return out


def events(emissions: list[tuple[datetime, Emission]]) -> list[TruthRecord]:
    return [r for _, e in emissions for r in e.truth if r.event]


@dataclass
class _Track:
    newest_ts: datetime
    seen: set[datetime] = field(default_factory=set)
    good_power_kw: float | None = None
    good_wind_ms: float | None = None
    wind_ms: float = float("nan")
    temperature_c: float = float("nan")
    wind_run: int = 0
    temperature_run: int = 0


class AgreedValidator:
    """The agreed rules. Rejected messages, copies and late readings change nothing; every
    other message is compared with the previous one (runs) and with the last good one."""

    def __init__(self, models: dict[str, TurbineModel]) -> None:
        self.models = models
        self.tracks: dict[str, _Track] = {}

    def judge(self, payload: bytes, routing_turbine_id: str, now: datetime) -> Expected:
        reading = self._hard(payload, routing_turbine_id, now)
        if reading is None:
            return Expected.REJECTED
        model = self.models[reading.turbine_id]
        track = self.tracks.get(reading.turbine_id)
        if track is not None and reading.ts in track.seen:
            return Expected.DUPLICATE
        flagged = self._mismatch(reading, model)
        if track is None:
            track = self.tracks[reading.turbine_id] = _Track(newest_ts=reading.ts)
        track.seen.add(reading.ts)
        if reading.ts < track.newest_ts:
            return Expected.FLAGGED  # out of order
        rated = model.rated_power_kw
        if track.good_power_kw is not None and track.good_wind_ms is not None:
            flagged |= abs(reading.power_kw - track.good_power_kw) >= 0.5 * rated
            flagged |= abs(reading.wind_speed_ms - track.good_wind_ms) >= 15.0
        track.wind_run = track.wind_run + 1 if reading.wind_speed_ms == track.wind_ms else 1
        track.temperature_run = (
            track.temperature_run + 1 if reading.temperature_c == track.temperature_c else 1
        )
        track.wind_ms, track.temperature_c = reading.wind_speed_ms, reading.temperature_c
        flagged |= track.wind_run >= 3 or track.temperature_run >= 3
        track.newest_ts = reading.ts
        if not flagged:
            track.good_power_kw, track.good_wind_ms = reading.power_kw, reading.wind_speed_ms
        return Expected.FLAGGED if flagged else Expected.ACCEPTED

    def _hard(self, payload: bytes, routing_turbine_id: str, now: datetime) -> Reading | None:
        reading = self._decode(payload)
        if reading is None or not self._plausible(reading, routing_turbine_id, now):
            return None
        return reading

    @staticmethod
    def _decode(payload: bytes) -> Reading | None:
        if len(payload) > MAX_MESSAGE_BYTES:
            return None
        try:
            body = orjson.loads(payload)  # refuses NaN and Infinity
        except orjson.JSONDecodeError:
            return None
        if not isinstance(body, dict) or type(body.get("v")) is not int:
            return None  # the model's default would hide a missing v
        try:
            return Reading.model_validate_json(payload)
        except ValidationError:
            return None

    def _plausible(self, reading: Reading, routing_turbine_id: str, now: datetime) -> bool:
        model = self.models.get(reading.turbine_id)
        if model is None or reading.turbine_id != routing_turbine_id:
            return False
        if reading.ts >= now + timedelta(hours=1) or reading.ts <= now - timedelta(days=30):
            return False
        rated = model.rated_power_kw
        return (
            -0.02 * rated <= reading.power_kw <= 1.10 * rated
            and 0.0 <= reading.wind_speed_ms <= 60.0
            and -50.0 <= reading.temperature_c <= 60.0
        )

    @staticmethod
    def _mismatch(reading: Reading, model: TurbineModel) -> bool:
        if reading.state in NON_PRODUCING_STATES:
            expected = 0.0
        else:
            density = air_density_kg_m3(reading.temperature_c)
            expected = model.power_kw(reading.wind_speed_ms, density)
            if reading.state is TurbineState.CURTAILED and reading.setpoint_kw is not None:
                expected = min(expected, reading.setpoint_kw)
        return abs(reading.power_kw - expected) >= 0.35 * model.rated_power_kw


def disagreements(sim: ParkSimulator, steps: int) -> list[tuple[Expected, Expected, Emission]]:
    validator = AgreedValidator({t.turbine_id: t.model for t in sim.turbines})
    wrong = []
    for ts, emission in run(sim, steps):
        got = validator.judge(emission.payload, emission.routing_turbine_id, ts)
        want = emission.truth[-1].expected if emission.truth else Expected.ACCEPTED
        if got != want:
            wrong.append((want, got, emission))
    return wrong


def test_no_faults_at_rate_zero() -> None:
    sim = make_sim(error_rate=0.0)
    clean = make_sim(error_rate=0.0)
    for k in range(200):
        ts = START + timedelta(seconds=k)
        emissions = sim.step(ts)
        readings = clean.step_readings(ts)
        assert [e.payload for e in emissions] == [encode(r) for r in readings]
        assert all(not e.truth for e in emissions)
        assert all(
            e.turbine_id == e.routing_turbine_id == r.turbine_id
            for e, r in zip(emissions, readings, strict=True)
        )
    assert sim.flush() == []


@pytest.mark.parametrize("error_rate", [0.0, 0.05, 0.2])
def test_event_rate_is_binomial(error_rate: float) -> None:
    turbines, steps = 50, 400
    found = len(events(run(make_sim(turbines, error_rate=error_rate), steps)))
    low, high = binom.interval(0.99, turbines * steps, error_rate)
    assert low <= found <= high


def test_every_kind_appears_with_the_default_mix() -> None:
    kinds = {r.kind for r in events(run(make_sim(30, error_rate=0.2), 400))}
    assert kinds == set(FaultKind)
    assert all(w > 0 for w in FaultMix.default().weights)


@pytest.mark.parametrize("kind", list(FaultKind))
def test_a_mix_of_one_kind_injects_only_that_kind(kind: FaultKind) -> None:
    emissions = run(make_sim(3, error_rate=0.5, mix=FaultMix.only(kind)), 150)
    records = [r for _, e in emissions for r in e.truth]
    assert {r.kind for r in records} == {kind}
    assert len([r for r in records if r.event]) > 20
    expected = {
        kind in HARD_KINDS: {Expected.REJECTED},
        kind in SOFT_KINDS: {Expected.FLAGGED},
        kind is FaultKind.DUPLICATE: {Expected.DUPLICATE},
        # The first reading of a stuck run is only the second identical value.
        kind is FaultKind.STUCK_SENSOR: {Expected.ACCEPTED, Expected.FLAGGED},
    }[True]
    assert {r.expected for r in records} == expected


def test_verdicts_follow_the_agreement() -> None:
    assert disagreements(make_sim(5, error_rate=0.2), 1200) == []


def test_verdicts_follow_the_agreement_through_storms_and_outages() -> None:
    sim = make_sim(5, error_rate=0.2, site=Site(mean_wind_ms=12.0), outages=True)
    assert disagreements(sim, 1200) == []


@pytest.mark.slow
@pytest.mark.parametrize("mean_wind_ms", [7.5, 11.0, 14.0])
def test_verdicts_follow_the_agreement_for_hours(mean_wind_ms: float) -> None:
    sim = make_sim(6, error_rate=0.2, site=Site(mean_wind_ms=mean_wind_ms), outages=True)
    assert disagreements(sim, 4 * 3600) == []


@pytest.mark.slow
def test_clean_readings_pass_the_agreement_for_half_a_day() -> None:
    sim = make_sim(4, error_rate=0.0, site=Site(mean_wind_ms=12.0), outages=True)
    assert disagreements(sim, 12 * 3600) == []


def test_stuck_sensor_repeats_the_previous_value() -> None:
    sim = make_sim(10, error_rate=0.05, mix=FaultMix.only(FaultKind.STUCK_SENSOR), stuck_readings=7)
    emissions = run(sim, 400)
    bodies = [(orjson.loads(e.payload), e.truth) for _, e in emissions]
    starts = [i for i, (_, truth) in enumerate(bodies) if truth and truth[0].event]
    assert len(starts) > 5
    for i in starts:
        body, truth = bodies[i]
        turbine = body["turbine_id"]
        same_turbine = [b for b in bodies if b[0]["turbine_id"] == turbine]
        k = same_turbine.index((body, truth))
        if k + 7 >= len(same_turbine):
            continue  # the run ended inside the window
        previous = same_turbine[k - 1][0]
        window = same_turbine[k : k + 7]
        channel = next(c for c in ("wind_speed_ms", "temperature_c") if body[c] == previous[c])
        assert all(b[channel] == previous[channel] for b, _ in window)
        assert [t[0].expected for _, t in window] == [Expected.ACCEPTED] + [Expected.FLAGGED] * 6
        assert same_turbine[k + 7][0][channel] != previous[channel]


def test_out_of_order_reading_follows_the_next_one() -> None:
    sim = make_sim(1, error_rate=0.1, mix=FaultMix.only(FaultKind.OUT_OF_ORDER))
    emissions = [e for _, e in run(sim, 500)]
    seqs = [e.seq for e in emissions if e.seq is not None]
    assert sorted(seqs) == list(range(500))
    late = [i for i, e in enumerate(emissions) if e.truth]
    assert late
    for i in late:
        assert seqs[i] == seqs[i - 1] - 1
        assert emissions[i].truth[0].expected is Expected.FLAGGED


def test_a_held_reading_is_flushed_at_the_end() -> None:
    sim = make_sim(1, error_rate=1.0, mix=FaultMix.only(FaultKind.OUT_OF_ORDER))
    assert sim.step(START) == []
    first = sim.step(START + timedelta(seconds=1))
    # Right after a held reading only a duplicate may start; with none in the mix the
    # event is skipped, and the held reading goes out after this one.
    assert [e.seq for e in first] == [1, 0]
    assert sim.step(START + timedelta(seconds=2)) == []
    assert [e.seq for e in sim.flush()] == [2]
    assert sim.flush() == []


def test_duplicate_is_an_identical_copy() -> None:
    sim = make_sim(1, error_rate=0.2, mix=FaultMix.only(FaultKind.DUPLICATE))
    emissions = [e for _, e in run(sim, 300)]
    copies = [i for i, e in enumerate(emissions) if e.truth]
    assert copies
    for i in copies:
        assert emissions[i].payload == emissions[i - 1].payload
        assert emissions[i].truth == (
            TruthRecord(
                "WTG01", emissions[i].seq or 0, FaultKind.DUPLICATE, Expected.DUPLICATE, True
            ),
        )


def test_unknown_turbine_is_published_under_the_senders_key() -> None:
    sim = make_sim(2, error_rate=0.2, mix=FaultMix.only(FaultKind.UNKNOWN_TURBINE))
    faulty = [e for _, e in run(sim, 100) if e.truth]
    assert faulty
    for e in faulty:
        body = orjson.loads(e.payload)
        assert body["turbine_id"] == e.turbine_id
        assert e.turbine_id.startswith("ZZ-UNKNOWN-")
        assert e.routing_turbine_id in ("WTG01", "WTG02")
        assert e.truth[0].turbine_id == e.routing_turbine_id


@pytest.mark.parametrize("kind", sorted(HARD_KINDS))
def test_hard_faults_break_the_contract(kind: FaultKind) -> None:
    sim = make_sim(2, error_rate=0.5, mix=FaultMix.only(kind))
    validator = AgreedValidator({t.turbine_id: t.model for t in sim.turbines})
    faulty = [(ts, e) for ts, e in run(sim, 100) if e.truth]
    assert faulty
    for ts, e in faulty:
        assert validator.judge(e.payload, e.routing_turbine_id, ts) is Expected.REJECTED
    payloads = [e.payload for _, e in faulty]
    if kind is FaultKind.NON_FINITE:
        assert all(b"NaN" in p or b"Infinity" in p for p in payloads)
    if kind is FaultKind.OVERSIZED:
        assert all(len(p) > MAX_MESSAGE_BYTES for p in payloads)
    if kind is FaultKind.NO_UTC_OFFSET:
        assert all(orjson.loads(p)["ts"].count(":") == 2 for p in payloads)
        assert all(not orjson.loads(p)["ts"].endswith("Z") for p in payloads)


def test_truth_records_as_json_lines() -> None:
    stream = io.StringIO()
    writer = GroundTruthWriter(stream)
    records = [
        TruthRecord("WTG01", 7, FaultKind.STUCK_SENSOR, Expected.ACCEPTED, event=True),
        TruthRecord("WTG01", 8, FaultKind.STUCK_SENSOR, Expected.FLAGGED),
    ]
    assert writer.write(records) == 2
    assert writer.write([]) == 0
    lines = [orjson.loads(line) for line in stream.getvalue().splitlines()]
    assert lines == [
        {
            "turbine_id": "WTG01",
            "seq": 7,
            "kind": "stuck_sensor",
            "expected": "accepted",
            "event": True,
        },
        {"turbine_id": "WTG01", "seq": 8, "kind": "stuck_sensor", "expected": "flagged"},
    ]
    writer.close()  # a stream it was given stays open
    assert not stream.closed


def test_fault_mix_construction() -> None:
    mix = FaultMix.parse("spike=2, duplicate")
    assert mix.weight(FaultKind.SPIKE) == 2.0
    assert mix.weight(FaultKind.DUPLICATE) == 1.0
    assert mix.weight(FaultKind.OVERSIZED) == 0.0
    assert FaultMix.parse("default") == FaultMix.default()
    assert FaultMix.of({"spike": 1.0}) == FaultMix.only(FaultKind.SPIKE)
    with pytest.raises(ValueError, match="cannot read"):
        FaultMix.parse("sparks=1")
    with pytest.raises(ValueError, match="finite"):
        FaultMix.of({FaultKind.SPIKE: -1.0})
    with pytest.raises(ValueError, match="non-zero weight"):
        make_sim(error_rate=0.1, mix=FaultMix.of({}))
