"""Park rollups (migration 0005): one row per bucket, kept by the ingest transaction,
right when several writers fill one bucket at once."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from services.aggregator import queries
from tests.conftest import new_turbine_id
from tests.factories import accepted, make_series
from windpark import registry, rollups
from windpark.contract import Reading
from windpark.db import Connection
from windpark.simulation import ParkSimulator, SimTurbine, Site
from windpark.simulation.backfill import backfill
from windpark.storage import write_batch
from windpark.turbine_model import load_model


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


async def _race_a_locked_writer(
    pool: asyncpg.Pool,
    holder: Connection,
    held: list[Reading],
    racer_pid: int,
    racer: Callable[[], Coroutine[Any, Any, object]],
) -> bool:
    """Run ``racer`` while ``holder`` has written ``held`` in a transaction it has not
    committed yet; commit, let the racer finish, and say whether it waited on an
    advisory lock meanwhile."""
    outer = holder.transaction()
    await outer.start()
    try:
        await write_batch(holder, [accepted(r) for r in held], [])
        task: asyncio.Task[object] = asyncio.create_task(racer())
        async with pool.acquire() as observer:
            waited = await _waits_on_advisory_lock(observer, racer_pid)
        assert not task.done()
    finally:
        await outer.commit()
    await task
    return waited


@pytest.mark.usefixtures("apache_only")  # regroup locks and tables of the Apache engine
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
        waited = await _race_a_locked_writer(
            db_pool,
            first,
            a,
            second.get_server_pid(),
            lambda: write_batch(second, [accepted(r) for r in b], []),
        )
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


@pytest.mark.usefixtures("apache_only")  # regroup locks and tables of the Apache engine
async def test_rebuild_regroups_under_the_live_writers_lock(db_pool: asyncpg.Pool) -> None:
    """A backfill's rebuild of one turbine waits for a live writer of another turbine
    on the same day, then regroups with its rows (no unique violation, nothing lost)."""
    minute = lonely_minute()
    async with (
        db_pool.acquire() as live,
        db_pool.acquire() as backfilling,
        db_pool.acquire() as observer,
    ):
        tid_live, tid_old, tid_first = await _register(live, 3)
        await write_batch(live, [accepted(r) for r in make_series(tid_first, minute, 1)], [])
        # History of tid_old written without rollups, as a COPY backfill leaves it.
        history = make_series(tid_old, minute + timedelta(seconds=1), 5, step_s=7.0)
        await backfilling.executemany(
            "INSERT INTO readings (ts, turbine_id, seq, power_kw, wind_speed_ms, temperature_c,"
            " state, quality_flags, source, received_at)"
            " VALUES ($1, $2, $3, $4, $5, $6, 'running', 0, 'backfill', now())",
            [
                (r.ts, r.turbine_id, r.seq, r.power_kw, r.wind_speed_ms, r.temperature_c)
                for r in history
            ],
        )
        waited = await _race_a_locked_writer(
            db_pool,
            live,
            make_series(tid_live, minute + timedelta(seconds=2), 3, step_s=9.0),
            backfilling.get_server_pid(),
            lambda: rollups.rebuild(backfilling, minute, minute + timedelta(minutes=1), [tid_old]),
        )
        park = await observer.fetchrow("SELECT * FROM park_rollup_1m WHERE bucket = $1", minute)
        raw = await observer.fetchrow(
            "SELECT count(DISTINCT turbine_id) AS turbines, count(*) AS n FROM readings"
            " WHERE ts >= $1 AND ts < $1 + INTERVAL '1 minute'",
            minute,
        )
    assert waited, "the rebuild did not wait for the live writer's day lock"
    assert park is not None
    assert raw is not None
    assert park["turbines_reporting"] == raw["turbines"] >= 3
    assert park["n"] == raw["n"]


@pytest.mark.usefixtures("apache_only")  # regroup locks and tables of the Apache engine
async def test_rebuild_in_spans_leaves_no_gap_or_overlap(db_pool: asyncpg.Pool) -> None:
    """rebuild() works 31 days per transaction: over 75 days starting mid-day, every
    level of the turbine and of the park equals raw at the spans' seams too."""
    start = datetime(2022, 3, 10, 13, 7, 30, tzinfo=UTC)
    end = start + timedelta(days=75)
    async with db_pool.acquire() as conn:
        [tid] = await _register(conn, 1)
        sim = ParkSimulator([SimTurbine(tid, load_model("E-82/2300"))], Site(), seed=3)
        await backfill(conn, sim, start, end, interval_s=900.0)
        reports: list[tuple[int, int]] = []
        await rollups.rebuild(conn, start, end, [tid], progress=lambda *r: reports.append(r))
        assert reports == [(31, 76), (62, 76), (76, 76)]  # UTC days touched, three spans
        for level in rollups.LEVELS:
            mismatches = await conn.fetchval(
                f"""
                SELECT count(*) FROM (
                    SELECT time_bucket(INTERVAL '{level.width}', ts) AS bucket, count(*) AS n,
                           sum(power_kw) AS power_sum
                    FROM readings WHERE turbine_id = $1 GROUP BY 1) raw
                FULL JOIN (SELECT bucket, n, power_sum FROM rollup_{level.name}
                           WHERE turbine_id = $1) rolled USING (bucket)
                WHERE raw.n IS DISTINCT FROM rolled.n
                   OR abs(raw.power_sum - rolled.power_sum) > 1e-9 * abs(raw.power_sum)
                """,
                tid,
            )
            assert mismatches == 0, level.name
            # The park rows over the range's buckets equal raw, all turbines together.
            lo = f"time_bucket(INTERVAL '{level.width}', $1::timestamptz)"
            hi = (
                f"time_bucket(INTERVAL '{level.width}', $2::timestamptz - INTERVAL '1 us')"
                f" + INTERVAL '{level.width}'"
            )
            park_mismatches = await conn.fetchval(
                f"""
                SELECT count(*) FROM (
                    SELECT time_bucket(INTERVAL '{level.width}', ts) AS bucket, count(*) AS n,
                           sum(power_kw) AS power_sum
                    FROM readings WHERE ts >= {lo} AND ts < {hi} GROUP BY 1) raw
                FULL JOIN (SELECT bucket, n, power_sum FROM park_rollup_{level.name}
                           WHERE bucket >= {lo} AND bucket < {hi}) park USING (bucket)
                WHERE raw.n IS DISTINCT FROM park.n
                   OR abs(raw.power_sum - park.power_sum) > 1e-9 * abs(raw.power_sum)
                """,
                start,
                end,
            )
            assert park_mismatches == 0, level.name


@pytest.mark.usefixtures("apache_only")  # regroup locks and tables of the Apache engine
async def test_ingest_regroup_reads_only_the_chunks_of_its_buckets(
    db_pool: asyncpg.Pool,
) -> None:
    """The regroup runs in every ingest transaction and the rollups keep years of
    chunks: its plan must leave out the chunks its buckets are not in (it probed every
    chunk of every level, and each batch grew slower with the history)."""
    minute = lonely_minute()
    async with db_pool.acquire() as conn:
        [tid] = await _register(conn, 1)
        # History in other chunks of rollup_1m (7-day chunks) than the batch's.
        spread = [minute - timedelta(days=30 * k) for k in range(4)]
        readings = [make_series(tid, at, 1, seq0=k)[0] for k, at in enumerate(spread)]
        await write_batch(conn, [accepted(r) for r in readings], [])
        chunks = {
            name
            for (name,) in await conn.fetch(
                "SELECT chunk_name FROM timescaledb_information.chunks"
                " WHERE hypertable_name = 'rollup_1m'"
            )
        }
        plan = await conn.fetchval(
            "EXPLAIN (FORMAT JSON) " + rollups.REFRESH_PARK_SQL, [minute], minute, minute
        )
    scanned = {name for name in chunks if f'"{name}"' in plan}
    assert len(chunks) >= 4
    assert len(scanned) <= 1, sorted(scanned)
