"""Park rollups (migration 0005): one row per bucket, kept by the ingest transaction,
right when several writers fill one bucket at once."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from services.aggregator import queries
from tests.conftest import new_turbine_id
from tests.factories import accepted, make_series
from windpark import registry
from windpark.db import Connection
from windpark.storage import write_batch


def lonely_minute() -> datetime:
    """A random minute of 2023, a year no other test writes to, so park-wide sums are
    this test's alone."""
    return datetime(2023, 1, 1, tzinfo=UTC) + timedelta(minutes=random.randrange(500_000))


async def _register(conn: Connection, count: int) -> list[str]:
    ids = [new_turbine_id("PARK") for _ in range(count)]
    for tid in ids:
        await registry.add_turbine(conn, tid, model="E-82/2300")
    return ids


async def _waits_on_advisory_lock(observer: Connection, pid: int) -> bool:
    for _ in range(200):
        if await observer.fetchval(
            "SELECT EXISTS (SELECT 1 FROM pg_locks"
            " WHERE pid = $1 AND locktype = 'advisory' AND NOT granted)",
            pid,
        ):
            return True
        await asyncio.sleep(0.025)
    return False


async def test_writers_of_one_bucket_regroup_in_turn(db_pool: asyncpg.Pool) -> None:
    """The second writer of a bucket waits for the first to commit, then regroups with
    its rows: the park row counts both turbines. (Regrouping from a snapshot taken
    before the first commit would leave the first turbine out.)"""
    minute = lonely_minute()
    async with db_pool.acquire() as first, db_pool.acquire() as second:
        tid_a, tid_b, tid_c = await _register(first, 3)
        # A first, committed writer creates the bucket's chunks, whose creation would
        # otherwise be what the racing writer waits for.
        await write_batch(first, [accepted(r) for r in make_series(tid_c, minute, 1)], [])
        a = make_series(tid_a, minute, 6, step_s=10.0)
        b = make_series(tid_b, minute + timedelta(seconds=3), 4, step_s=10.0)
        outer = first.transaction()
        await outer.start()
        try:
            await write_batch(first, [accepted(r) for r in a], [])
            racing = asyncio.create_task(write_batch(second, [accepted(r) for r in b], []))
            async with db_pool.acquire() as observer:
                waited = await _waits_on_advisory_lock(observer, second.get_server_pid())
            assert not racing.done()
        finally:
            await outer.commit()
        await racing
        park = await first.fetchrow("SELECT * FROM park_rollup_1m WHERE bucket = $1", minute)
        raw = await first.fetchrow(
            """
            SELECT count(*) AS turbines, sum(n) AS n, sum(power_sum) AS power_sum,
                   sum(power_mean) AS power_mean_sum
            FROM (SELECT turbine_id, count(*) AS n, sum(power_kw) AS power_sum,
                         avg(power_kw) AS power_mean
                  FROM readings WHERE ts >= $1 AND ts < $1 + INTERVAL '1 minute'
                  GROUP BY turbine_id) per_turbine
            """,
            minute,
        )
    assert waited, "the second writer did not wait for the first one's park lock"
    assert park is not None
    assert raw is not None
    assert raw["turbines"] >= 3
    assert park["turbines_reporting"] == raw["turbines"]
    assert park["n"] == raw["n"]
    assert park["power_sum"] == pytest.approx(raw["power_sum"], rel=1e-12)
    assert park["power_mean_sum"] == pytest.approx(raw["power_mean_sum"], rel=1e-12)


LEVELS = (("1m", "1 minute"), ("10m", "10 minutes"), ("1h", "1 hour"), ("1d", "1 day"))


async def _park_rows(conn: Connection, at: datetime) -> dict[str, asyncpg.Record | None]:
    return {
        level: await conn.fetchrow(
            f"SELECT n, power_sum FROM park_rollup_{level}"
            f" WHERE bucket = time_bucket(INTERVAL '{width}', $1::timestamptz)",
            at,
        )
        for level, width in LEVELS
    }


async def test_late_readings_regroup_every_level(db_pool: asyncpg.Pool) -> None:
    """A reading written after its bucket was regrouped adds into that bucket's park row
    at every level, and a duplicate adds nothing. (Coarse buckets may hold other
    tests' readings: the test looks at what its own write changed.)"""
    minute = lonely_minute()
    async with db_pool.acquire() as conn:
        [tid] = await _register(conn, 1)
        first = make_series(tid, minute, 3, step_s=10.0)
        await write_batch(conn, [accepted(r) for r in first], [])
        before = await _park_rows(conn, minute)
        late = make_series(tid, minute + timedelta(seconds=35), 1)[0].model_copy(
            update={"seq": 99, "power_kw": 2000.0}
        )
        await write_batch(conn, [accepted(late), accepted(first[0], key="again")], [])
        after = await _park_rows(conn, minute)
    for level, _ in LEVELS:
        old, new = before[level], after[level]
        assert old is not None, level
        assert new is not None, level
        assert new["n"] - old["n"] == 1, level
        assert new["power_sum"] - old["power_sum"] == pytest.approx(2000.0, rel=1e-9), level


async def test_both_park_queries_answer_the_same_columns(db_pool: asyncpg.Pool) -> None:
    """aggregates.py unpacks the park rows by position: the park rollup's query and the
    one that groups turbine rows must keep queries.PARK_BUCKET_COLUMNS' order."""
    async with db_pool.acquire() as conn:
        for sql in (
            queries.park_rollup_sql("park_rollup_1h"),
            queries.park_buckets_sql("rollup_1h", by_local_day=False),
            queries.park_buckets_sql("rollup_1h", by_local_day=True),
        ):
            statement = await conn.prepare(sql)
            names = tuple(a.name for a in statement.get_attributes())
            assert names == queries.PARK_BUCKET_COLUMNS
