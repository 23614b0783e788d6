"""The simulated turbines' physics: wind, power curve, states, coherence of the channels."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from windpark.contract import NON_PRODUCING_STATES
from windpark.simulation import ParkSimulator, ReadingBlock, Reliability, SimTurbine, Site
from windpark.simulation.turbine import (
    CURTAILED,
    FAULT,
    IDLE,
    MAINTENANCE,
    RUNNING,
    STATES,
    STORM,
    TurbineTable,
)
from windpark.simulation.wind import WindField
from windpark.turbine_model import TurbineModel, air_density_kg_m3, load_model

E82 = load_model("E-82/2300")
START = datetime(2026, 1, 1, tzinfo=UTC)


def make_sim(count: int = 10, *, prefix: str = "WTG", **overrides: object) -> ParkSimulator:
    turbine_overrides = {
        k: overrides.pop(k) for k in ("reliability", "curtailment_kw") if k in overrides
    }
    turbines = [
        SimTurbine(turbine_id=f"{prefix}{i:02d}", model=E82, **turbine_overrides)  # type: ignore[arg-type]
        for i in range(1, count + 1)
    ]
    return ParkSimulator(turbines=turbines, **overrides)  # type: ignore[arg-type]


def curve(model: TurbineModel, wind: np.ndarray, temperature: np.ndarray) -> np.ndarray:
    return np.array(
        [model.power_kw(v, air_density_kg_m3(t)) for v, t in zip(wind, temperature, strict=True)]
    )


@pytest.fixture(scope="module")
def two_years() -> ReadingBlock:
    """Ten turbines at the default site, every 10 minutes for two years."""
    return make_sim(seed=42, interval_s=600).simulate_block(START, 2 * 365 * 144, 600)


@pytest.fixture(scope="module")
def windy_day() -> ReadingBlock:
    """A windy site with frequent outages, one reading a second: every state occurs."""
    sim = make_sim(
        6,
        site=Site(mean_wind_ms=12.0),
        seed=7,
        interval_s=1.0,
        reliability=Reliability(mtbf_days=0.5, mean_repair_h=1.0, maintenance_interval_days=1),
    )
    return sim.simulate_block(datetime(2026, 3, 1, tzinfo=UTC), 86_400, 1.0)


def test_vectorised_curve_is_the_models_curve() -> None:
    table = TurbineTable([SimTurbine("A", E82), SimTurbine("B", load_model("V112/3000"))], 1)
    rng = np.random.default_rng(1)
    wind = rng.uniform(0.0, 30.0, size=(500, 2))
    temperature = rng.uniform(-20.0, 35.0, size=500)
    factor = np.cbrt(101325.0 / (287.05 * (temperature + 273.15)) / 1.225)
    got = table.curve_kw(wind, factor)
    for column, model in enumerate((E82, load_model("V112/3000"))):
        want = curve(model, wind[:, column], temperature)
        np.testing.assert_allclose(got[:, column], want, rtol=1e-9, atol=1e-9)


def test_capacity_factor_at_the_default_site(two_years: ReadingBlock) -> None:
    capacity_factor = two_years.power_kw.mean() / E82.rated_power_kw
    assert 0.25 <= capacity_factor <= 0.45


def test_park_wind_is_weibull_in_the_long_run() -> None:
    site = Site()
    t_ms = (START - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)
    times = t_ms + np.arange(5 * 365 * 144, dtype=np.int64) * 600_000
    wind = WindField(site, seed=3).park(times).mean_ms
    assert wind.mean() == pytest.approx(site.mean_wind_ms, rel=0.03)
    for q in (0.1, 0.5, 0.9, 0.99):
        weibull = site.weibull_scale_ms * (-math.log(1.0 - q)) ** (1.0 / site.weibull_k)
        assert np.quantile(wind, q) == pytest.approx(weibull, rel=0.06)


def test_mean_power_per_wind_bin_lies_on_the_curve(two_years: ReadingBlock) -> None:
    # IEC 61400-12-1 method of bins on density-normalised wind, running readings only.
    running = two_years.state == RUNNING
    wind = two_years.wind_speed_ms[running]
    power = two_years.power_kw[running]
    density = 101325.0 / (287.05 * (two_years.temperature_c[running] + 273.15))
    normalised = wind * (density / 1.225) ** (1.0 / 3.0)
    bins = np.arange(E82.cut_in_ms + 0.5, E82.rated_wind_ms(), 0.5)
    checked = 0
    for low in bins:
        chosen = (normalised >= low) & (normalised < low + 0.5)
        if chosen.sum() < 100:
            continue
        expected = E82.power_kw(float(normalised[chosen].mean()))
        assert power[chosen].mean() == pytest.approx(expected, rel=0.05), f"bin {low} m/s"
        checked += 1
    assert checked >= 15


def test_no_power_unless_running_or_curtailed(
    windy_day: ReadingBlock, two_years: ReadingBlock
) -> None:
    seen = set(np.unique(windy_day.state)) | set(np.unique(two_years.state))
    assert {STATES[code] for code in seen} == set(STATES), "every state should occur"
    assert {STATES[c] for c in (IDLE, STORM, FAULT, MAINTENANCE)} == set(NON_PRODUCING_STATES)
    for block in (windy_day, two_years):
        stopped = np.isin(block.state, [IDLE, STORM, FAULT, MAINTENANCE])
        assert np.all(block.power_kw[stopped] == 0.0)


def test_running_power_stays_near_the_curve(
    windy_day: ReadingBlock, two_years: ReadingBlock
) -> None:
    rated = E82.rated_power_kw
    for block in (windy_day, two_years):
        running = block.state == RUNNING
        power = block.power_kw[running]
        expected = curve(E82, block.wind_speed_ms[running], block.temperature_c[running])
        assert np.all(np.abs(power - expected) <= 0.10 * rated + 0.10 * expected)
        assert block.power_kw.min() >= 0.0
        assert block.power_kw.max() <= 1.05 * rated


def test_curtailed_power_never_exceeds_the_setpoint(windy_day: ReadingBlock) -> None:
    curtailed = windy_day.state == CURTAILED
    assert curtailed.any()
    assert np.all(windy_day.power_kw[curtailed] <= windy_day.setpoint_kw[curtailed])
    # A set-point is reported exactly when the turbine is curtailed.
    assert np.array_equal(~np.isnan(windy_day.setpoint_kw), curtailed)


def test_standing_curtailment_caps_power() -> None:
    sim = make_sim(2, curtailment_kw=1000.0, site=Site(mean_wind_ms=11.0), seed=5)
    block = sim.simulate_block(START, 20_000, 1.0)
    producing = np.isin(block.state, [RUNNING, CURTAILED])
    assert np.all(block.state[producing] == CURTAILED)
    assert np.all(block.power_kw <= 1000.0)
    # Storm derate and outage ramps may lower the set-point further.
    assert np.all(block.setpoint_kw[producing] <= 1000.0)
    assert np.mean(block.setpoint_kw[producing] == 1000.0) > 0.9
    assert block.power_kw.max() > 900.0


def test_storm_stop_with_hysteresis(windy_day: ReadingBlock) -> None:
    wind, state = windy_day.wind_speed_ms, windy_day.state
    # Never producing at or above cut-out.
    assert not np.any(np.isin(state, [RUNNING, CURTAILED]) & (wind >= E82.cut_out_ms))
    before, after = state[:-1], state[1:]
    entering = (after == STORM) & np.isin(before, [IDLE, RUNNING, CURTAILED])
    leaving = (before == STORM) & (after != STORM) & (after != FAULT) & (after != MAINTENANCE)
    assert entering.any()
    assert leaving.any()
    assert np.all(wind[1:][entering] >= E82.cut_out_ms)
    assert np.all(wind[1:][leaving] < E82.restart_ms)
    # In between, storm persists while the wind is between restart and cut-out.
    between = (wind[1:] >= E82.restart_ms) & (wind[1:] < E82.cut_out_ms) & (before == STORM)
    assert between.any()
    assert np.all(np.isin(after[between], [STORM, FAULT, MAINTENANCE]))


def test_idle_below_cut_in(two_years: ReadingBlock) -> None:
    idle = two_years.state == IDLE
    assert idle.any()
    assert np.all(two_years.wind_speed_ms[idle] < E82.cut_in_ms)
    running = two_years.state == RUNNING
    assert np.all(two_years.wind_speed_ms[running] >= E82.cut_in_ms)


def test_turbines_are_correlated_but_not_identical(two_years: ReadingBlock) -> None:
    off_diagonal = ~np.eye(10, dtype=bool)
    long_run = np.asarray(np.corrcoef(two_years.wind_speed_ms.T))[off_diagonal]
    assert long_run.min() > 0.5
    assert long_run.max() < 0.999
    # Within an hour the mean wind hardly moves: the correlation is the turbulence's.
    hour = make_sim(10, seed=11).simulate_block(datetime(2026, 6, 1, 12, tzinfo=UTC), 3600, 1.0)
    short = np.asarray(np.corrcoef(hour.wind_speed_ms.T))[off_diagonal]
    assert short.mean() > 0.5
    assert short.max() < 0.999
    assert np.all(hour.wind_speed_ms[:, 0] != hour.wind_speed_ms[:, 1])


def test_ambient_temperature_has_daily_and_seasonal_cycles(two_years: ReadingBlock) -> None:
    temperature = two_years.temperature_c[:, 0]
    times = [START + timedelta(minutes=10 * i) for i in range(len(temperature))]
    hours = np.array([t.hour for t in times])
    months = np.array([t.month for t in times])
    assert temperature[hours == 15].mean() > temperature[hours == 3].mean() + 5.0
    assert temperature[months == 7].mean() > temperature[months == 1].mean() + 10.0
    assert temperature.min() > -50.0
    assert temperature.max() < 60.0


def test_nacelle_temperature_follows_load(windy_day: ReadingBlock) -> None:
    above_ambient = windy_day.nacelle_temperature_c - windy_day.temperature_c
    assert np.corrcoef(above_ambient.ravel(), windy_day.power_kw.ravel())[0, 1] > 0.5
    assert np.all(above_ambient > 0.0)


def test_rotor_and_pitch_are_coherent(windy_day: ReadingBlock) -> None:
    stopped = np.isin(windy_day.state, [STORM, FAULT, MAINTENANCE])
    running = windy_day.state == RUNNING
    assert np.all(windy_day.rotor_rpm[stopped] < 0.5)
    assert np.all(windy_day.pitch_deg[stopped] > 80.0)
    assert np.all(windy_day.rotor_rpm[running] > 5.0)
    above_rated = running & (windy_day.wind_speed_ms > E82.rated_wind_ms() + 2.0)
    below_rated = running & (windy_day.wind_speed_ms < E82.rated_wind_ms() - 2.0)
    assert windy_day.pitch_deg[above_rated].min() > windy_day.pitch_deg[below_rated].max()


def _longest_repeat(values: np.ndarray) -> int:
    same = np.concatenate([[False], values[1:] == values[:-1]])
    longest = run = 1
    for flag in same[1:]:
        run = run + 1 if flag else 1
        longest = max(longest, run)
    return longest


def test_honest_channels_never_repeat_three_times(windy_day: ReadingBlock) -> None:
    for name in (
        "wind_speed_ms",
        "temperature_c",
        "rotor_rpm",
        "pitch_deg",
        "nacelle_temperature_c",
        "wind_direction_deg",
    ):
        channel = getattr(windy_day, name)
        for column in range(channel.shape[1]):
            assert _longest_repeat(channel[:, column]) < 3, name
    power = windy_day.power_kw
    for column in range(power.shape[1]):
        values = power[:, column]
        positive = values > 0
        assert _longest_repeat(np.where(positive, values, -np.arange(len(values)))) < 3


def test_consecutive_honest_readings_do_not_jump(windy_day: ReadingBlock) -> None:
    # Outages and storms are entered and left on ramps, not from full power to zero.
    rated = E82.rated_power_kw
    power_steps = np.abs(np.diff(windy_day.power_kw, axis=0))
    assert power_steps.max() < 0.2 * rated
    # Even three readings apart (a gap of flagged or rejected messages) the power moves
    # less than the spike threshold of 0.5 * rated.
    assert np.abs(windy_day.power_kw[3:] - windy_day.power_kw[:-3]).max() < 0.5 * rated
    assert np.abs(np.diff(windy_day.wind_speed_ms, axis=0)).max() < 5.0


@pytest.mark.parametrize("interval_s", [1.0, 600.0, 4 * 3600.0])
def test_block_and_step_give_the_same_readings(interval_s: float) -> None:
    start = datetime(2026, 2, 1, tzinfo=UTC)
    block = make_sim(3, seed=9).simulate_block(start, 300, interval_s).readings()
    stepper = make_sim(3, seed=9)
    stepped = [
        r
        for k in range(300)
        for r in stepper.step_readings(start + timedelta(seconds=k * interval_s))
    ]
    assert len(block) == len(stepped)
    for a, b in zip(block, stepped, strict=True):
        assert a.model_dump(exclude={"nacelle_temperature_c"}) == b.model_dump(
            exclude={"nacelle_temperature_c"}
        )
        # The thermal lag is computed in closed form over a block: equal to rounding.
        assert a.nacelle_temperature_c == pytest.approx(b.nacelle_temperature_c, abs=2e-6)


def test_time_must_move_forward() -> None:
    sim = make_sim(1)
    sim.step_readings(START)
    with pytest.raises(ValueError, match="time must move forward"):
        sim.step_readings(START)
    with pytest.raises(ValueError, match="aware"):
        sim.step_readings(datetime(2026, 1, 2))


def test_seq_starts_where_asked_and_counts_readings() -> None:
    sim = make_sim(2, seq_start={"WTG02": 100})
    first = sim.step_readings(START)
    second = sim.step_readings(START + timedelta(seconds=1))
    assert [r.seq for r in first] == [0, 100]
    assert [r.seq for r in second] == [1, 101]
    block = sim.simulate_block(START + timedelta(seconds=2), 5)
    assert block.seq[:, 1].tolist() == [102, 103, 104, 105, 106]


def test_curtailment_set_at_run_time_ramps() -> None:
    sim = make_sim(1, site=Site(mean_wind_ms=14.0), seed=2)
    before = sim.step_readings(START)[0]
    assert before.state is STATES[RUNNING]
    sim.set_curtailment("WTG01", 500.0, START + timedelta(seconds=1))
    powers = [sim.step_readings(START + timedelta(seconds=k))[0] for k in range(1, 60)]
    # The ramp starts at the change: from the next reading on the turbine is curtailed.
    assert all(r.setpoint_kw is not None for r in powers[1:])
    steps = np.abs(np.diff([before.power_kw, *(r.power_kw for r in powers)]))
    assert steps.max() < 0.1 * E82.rated_power_kw
    assert powers[-1].power_kw <= 500.0
