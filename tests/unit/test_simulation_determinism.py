"""Determinism: the same seed gives the same bytes, however the park is split."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np

from windpark.simulation import Emission, FaultMix, ParkSimulator, SimTurbine, Site
from windpark.simulation.randomness import bounded_normal, keys_array, stable_key, uniform
from windpark.turbine_model import load_model

E82 = load_model("E-82/2300")
START = datetime(2026, 11, 28, 18, tzinfo=UTC)
IDS = [f"WTG{i:02d}" for i in range(1, 11)]


def make_sim(ids: list[str], *, seed: int = 42, error_rate: float = 0.2) -> ParkSimulator:
    return ParkSimulator(
        turbines=[SimTurbine(turbine_id=t, model=E82) for t in ids],
        site=Site(),
        seed=seed,
        error_rate=error_rate,
        fault_mix=FaultMix.default(),
        interval_s=1.0,
    )


def run(sim: ParkSimulator, steps: int, start: datetime = START) -> list[Emission]:
    out = [e for k in range(steps) for e in sim.step(start + timedelta(seconds=k))]
    return out + sim.flush()


def by_sender(emissions: list[Emission]) -> dict[str, list[Emission]]:
    grouped: dict[str, list[Emission]] = {}
    for e in emissions:
        grouped.setdefault(e.routing_turbine_id, []).append(e)
    return grouped


def test_same_seed_gives_identical_bytes() -> None:
    first = run(make_sim(IDS), 300)
    second = run(make_sim(IDS), 300)
    assert [e.payload for e in first] == [e.payload for e in second]
    assert first == second
    assert any(e.truth for e in first)


def test_another_seed_gives_other_readings() -> None:
    first = [e.payload for e in run(make_sim(IDS, error_rate=0.0), 20)]
    other = [e.payload for e in run(make_sim(IDS, seed=43, error_rate=0.0), 20)]
    assert all(a != b for a, b in zip(first, other, strict=True))


def test_one_process_per_turbine_equals_one_process_for_all() -> None:
    together = by_sender(run(make_sim(IDS), 400))
    for turbine_id in IDS:
        alone = run(make_sim([turbine_id]), 400)
        assert alone == together[turbine_id], turbine_id


def test_a_turbine_does_not_depend_on_its_neighbours() -> None:
    # Another park composition and order: WTG03's messages stay the same.
    small = by_sender(run(make_sim(["WTG09", "WTG03"]), 200))["WTG03"]
    large = by_sender(run(make_sim([*reversed(IDS), "WTG77"]), 200))["WTG03"]
    assert small == large


def test_the_weather_depends_on_time_not_on_when_the_process_started() -> None:
    early = make_sim(IDS, error_rate=0.0)
    late = make_sim(IDS, error_rate=0.0)
    for k in range(100):
        early.step_readings(START + timedelta(seconds=k))
    a = early.step_readings(START + timedelta(seconds=100))
    b = late.step_readings(START + timedelta(seconds=100))
    for x, y in zip(a, b, strict=True):
        assert (x.wind_speed_ms, x.temperature_c, x.wind_direction_deg) == (
            y.wind_speed_ms,
            y.temperature_c,
            y.wind_direction_deg,
        )


def test_keys_are_stable_across_processes() -> None:
    # blake2b, not hash(): the value must never change (PYTHONHASHSEED, platform).
    assert stable_key("windpark.sim", 42, "WTG01", "gust") == 11248180582502533595
    keys = keys_array([stable_key("t")])
    counters = np.arange(4, dtype=np.int64)[:, None]
    assert uniform(keys, counters).ravel().tolist() == [
        0.5151685525429387,
        0.9722650919236049,
        0.8734100364793624,
        0.37547081614390976,
    ]


def test_counter_based_noise_has_the_right_moments() -> None:
    values = bounded_normal(keys_array([stable_key("moments")]), np.arange(200_000)[:, None])
    assert abs(values.mean()) < 0.01
    assert abs(values.std() - 1.0) < 0.01
    assert np.abs(values).max() <= 12**0.5
