"""Every rollup equals the raw-data computation for a backfilled month, including after
late and duplicate readings are added (issue 5's acceptance)."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from tests.conftest import new_turbine_id
from tests.factories import accepted, make_reading
from windpark import registry, rollups
from windpark.simulation import ParkSimulator, SimTurbine, Site
from windpark.simulation.backfill import backfill
from windpark.storage import write_batch
from windpark.turbine_model import load_model

pytestmark = pytest.mark.slow
START = datetime(2025, 2, 1, tzinfo=UTC)
END = datetime(2025, 3, 1, tzinfo=UTC)
CHANNELS = {"power": "power_kw", "wind": "wind_speed_ms", "temp": "temperature_c"}


@pytest.fixture(scope="module")
async def month(db_pool: asyncpg.Pool) -> list[str]:
    """Two turbines, February 2025 every 30 s, then late readings and duplicates."""
    ids = [new_turbine_id("MONTH") for _ in range(2)]
    model = load_model("E-82/2300")
    async with db_pool.acquire() as conn:
        for tid in ids:
            await registry.add_turbine(conn, tid, model=model.name)
        sim = ParkSimulator([SimTurbine(t, model) for t in ids], Site(), seed=5)
        await backfill(conn, sim, START, END, interval_s=30.0)
        await rollups.rebuild(conn, START, END, ids)
        # Late readings between the backfilled ones (15 s offsets), in several buckets,
        # and readings of stored (turbine, ts) with other values: kept as conflicts, not
        # counted in the rollups.
        late = [
            make_reading(turbine_id=tid, ts=START + timedelta(hours=h, seconds=15), seq=10**6 + h)
            for tid in ids
            for h in range(0, 28 * 24, 37)
        ]
        dups = [
            make_reading(
                turbine_id=tid, ts=START + timedelta(hours=h), seq=2 * 10**6 + h, power_kw=1.0
            )
            for tid in ids
            for h in range(0, 28 * 24, 53)
        ]
        result = await write_batch(conn, [accepted(r) for r in late + dups], [])
    assert result.stored == len(late)
    assert result.conflicts == len(dups)
    return ids


@pytest.mark.parametrize("level", [level.name for level in rollups.LEVELS])
async def test_rollup_equals_raw(db_pool: asyncpg.Pool, month: list[str], level: str) -> None:
    width = rollups.LEVEL_BY_NAME[level].width
    raw_stats = ", ".join(
        f"sum({c}) AS {ch}_sum, avg({c}) AS {ch}_avg, min({c}) AS {ch}_min, "
        f"max({c}) AS {ch}_max, stddev_samp({c}) AS {ch}_std"
        for ch, c in CHANNELS.items()
    )
    async with db_pool.acquire() as conn:
        raw = await conn.fetch(
            f"""
            SELECT time_bucket(INTERVAL '{width}', ts) AS bucket, turbine_id, count(*) AS n,
                   count(*) FILTER (WHERE state NOT IN ('fault', 'maintenance')) AS n_available,
                   {raw_stats}
            FROM readings WHERE turbine_id = ANY($1::text[]) GROUP BY 1, 2 ORDER BY 2, 1
            """,
            month,
        )
        rolled = await conn.fetch(
            f"""
            SELECT r.*, s.power_avg_kw, s.power_std_kw, s.wind_speed_avg_ms, s.wind_speed_std_ms,
                   s.temperature_avg_c, s.temperature_std_c
            FROM rollup_{level} r JOIN rollup_{level}_stats s USING (turbine_id, bucket)
            WHERE r.turbine_id = ANY($1::text[]) ORDER BY r.turbine_id, r.bucket
            """,
            month,
        )
    assert len(rolled) == len(raw) > 0
    stats = {"power": "power_{}_kw", "wind": "wind_speed_{}_ms", "temp": "temperature_{}_c"}
    for got, want in zip(rolled, raw, strict=True):
        assert (got["turbine_id"], got["bucket"]) == (want["turbine_id"], want["bucket"])
        assert got["n"] == want["n"]
        assert got["n_available"] == want["n_available"]
        for ch in CHANNELS:
            assert math.isclose(got[f"{ch}_sum"], want[f"{ch}_sum"], rel_tol=1e-9, abs_tol=1e-9)
            assert got[f"{ch}_min"] == want[f"{ch}_min"]
            assert got[f"{ch}_max"] == want[f"{ch}_max"]
            avg = got[stats[ch].format("avg")]
            assert math.isclose(avg, want[f"{ch}_avg"], rel_tol=1e-9, abs_tol=1e-9)
            if want["n"] > 1:
                # The rollups derive the standard deviation from sums of squares, whose
                # rounding error scales with the channel's magnitude, not with the spread:
                # a near-constant minute of temperatures around 15 °C has a std of 1e-3
                # known to about 1e-6 absolute. So 1e-6 relative to the larger of the two.
                std = got[stats[ch].format("std")]
                scale = max(abs(want[f"{ch}_avg"]), want[f"{ch}_std"], 1.0)
                assert abs(std - want[f"{ch}_std"]) <= 1e-6 * scale


@pytest.mark.parametrize("level", [level.name for level in rollups.LEVELS])
async def test_park_rollup_equals_raw(db_pool: asyncpg.Pool, month: list[str], level: str) -> None:
    """Each park bucket of the month, from every turbine's raw readings in it. One
    snapshot for both sides, since the buckets are park-wide."""
    width = rollups.LEVEL_BY_NAME[level].width
    async with db_pool.acquire() as conn, conn.transaction(isolation="repeatable_read"):
        raw = await conn.fetch(
            f"""
            SELECT bucket, count(*) AS turbines_reporting, sum(n) AS n,
                   sum(n_available) AS n_available, sum(power_sum) AS power_sum,
                   sum(power_mean) AS power_mean_sum, sum(wind_sum) AS wind_sum,
                   sum(temp_sum) AS temp_sum
            FROM (SELECT time_bucket(INTERVAL '{width}', ts) AS bucket, turbine_id,
                         count(*) AS n,
                         count(*) FILTER (WHERE state NOT IN ('fault', 'maintenance'))
                             AS n_available,
                         sum(power_kw) AS power_sum, avg(power_kw) AS power_mean,
                         sum(wind_speed_ms) AS wind_sum, sum(temperature_c) AS temp_sum
                  FROM readings WHERE ts >= $1 AND ts < $2 GROUP BY 1, 2) per_turbine
            GROUP BY bucket ORDER BY bucket
            """,
            START,
            END,
        )
        park = await conn.fetch(
            f"SELECT * FROM park_rollup_{level} WHERE bucket >= $1 AND bucket < $2 ORDER BY bucket",
            START,
            END,
        )
    assert len(park) == len(raw) > 0
    for got, want in zip(park, raw, strict=True):
        assert got["bucket"] == want["bucket"]
        for count in ("turbines_reporting", "n", "n_available"):
            assert got[count] == want[count], (got["bucket"], count)
        for total in ("power_sum", "power_mean_sum", "wind_sum", "temp_sum"):
            assert math.isclose(got[total], want[total], rel_tol=1e-9, abs_tol=1e-9), (
                got["bucket"],
                total,
            )
