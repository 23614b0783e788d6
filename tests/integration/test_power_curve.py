"""The method of bins on simulated history recovers the model's curve (performance ~ 1)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import asyncpg

from windpark import power_curve
from windpark.simulation import ParkSimulator, SimTurbine, Site
from windpark.simulation.backfill import backfill
from windpark.turbine_model import load_model


async def test_simulated_turbine_performs_on_its_curve(
    db_pool: asyncpg.Pool, turbine_id: str
) -> None:
    model = load_model("E-82/2300")
    start = datetime(2026, 6, 1, tzinfo=UTC)
    end = start + timedelta(hours=12)
    sim = ParkSimulator([SimTurbine(turbine_id=turbine_id, model=model)], Site(), seed=7)
    async with db_pool.acquire() as conn:
        await backfill(conn, sim, start, end, interval_s=2.0)
        curve = await power_curve.measure(conn, turbine_id, model, start, end)
    assert curve.readings_used > 10_000
    assert curve.performance_ratio is not None
    assert abs(curve.performance_ratio - 1.0) < 0.03
    populated = [b for b in curve.bins if b.n >= 50 and b.reference_power_kw > 100]
    assert len(populated) >= 5
    for b in populated:
        assert b.bin_ms - 0.25 <= b.wind_avg_ms <= b.bin_ms + 0.25
        assert b.performance_ratio is not None
        assert abs(b.performance_ratio - 1.0) < 0.05


def test_underperformance_shows_in_the_ratio() -> None:
    model = load_model("E-82/2300")
    rows = [(8.0, 100, 8.0, 0.9 * model.power_kw(8.0), 10.0), (1.0, 50, 1.0, 0.0, 0.0)]
    curve = power_curve.assemble("X", model, rows)
    assert curve.performance_ratio is not None
    assert abs(curve.performance_ratio - 0.9) < 1e-9
    assert curve.bins[1].performance_ratio is None  # below cut-in: no reference
    assert curve.readings_used == 150
