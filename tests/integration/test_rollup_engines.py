"""Two rollup engines, one contract: the continuous aggregates of the community license
(migration 0002, recreated with the energy sums by 0007) must have exactly the columns of
the tables windpark maintains.

This machine has the Apache edition, where CREATE MATERIALIZED VIEW ... timescaledb.continuous
is refused; the SELECTs that define the aggregates are run here as plain queries, over the
Apache tables, and their result columns compared with the tables' columns.
"""

from __future__ import annotations

import importlib.util
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType

import asyncpg
import pytest

from tests.factories import accepted, make_series
from windpark import rollups
from windpark.db import Connection
from windpark.simulation import ParkSimulator, SimTurbine
from windpark.simulation.backfill import backfill
from windpark.storage import write_batch
from windpark.turbine_model import DEFAULT_MODEL, load_model

ROOT = Path(__file__).resolve().parents[2]
# The migration that last defined the continuous aggregates.
HEAD_MIGRATION = "0007_energy.py"


def _migration(file: str = HEAD_MIGRATION) -> ModuleType:
    path = ROOT / "migrations" / "versions" / file
    spec = importlib.util.spec_from_file_location(f"migration_{path.stem}", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def _columns(conn: Connection, sql: str) -> list[tuple[str, str]]:
    statement = await conn.prepare(f"SELECT * FROM ({sql}) q LIMIT 0")
    return [(a.name, a.type.name) for a in statement.get_attributes()]


@pytest.mark.parametrize("level", [level.name for level in rollups.LEVELS])
async def test_continuous_aggregate_definitions_match_the_tables(
    db_pool: asyncpg.Pool, level: str
) -> None:
    migration = _migration()
    levels = list(migration.LEVELS)
    source = None if level == levels[0] else f"rollup_{levels[levels.index(level) - 1]}"
    async with db_pool.acquire() as conn:
        defined = await _columns(conn, migration.cagg_select(level, source))
        table = await _columns(conn, f"SELECT * FROM rollup_{level}")
    assert defined == table


async def test_continuous_aggregate_values_equal_the_maintained_rollups(
    db_pool: asyncpg.Pool, turbine_id: str
) -> None:
    """The 10-minute definition over rollup_1m gives what windpark wrote into rollup_10m."""
    readings = make_series(turbine_id, datetime(2026, 4, 2, 7, 55, tzinfo=UTC), 900, step_s=1.1)
    migration = _migration()
    async with db_pool.acquire() as conn:
        await write_batch(conn, [accepted(r) for r in readings], [])
        defined = await conn.fetch(
            f"SELECT * FROM ({migration.cagg_select('10m', 'rollup_1m')}) q"
            " WHERE turbine_id = $1 ORDER BY bucket",
            turbine_id,
        )
        table = await conn.fetch(
            "SELECT * FROM rollup_10m WHERE turbine_id = $1 ORDER BY bucket", turbine_id
        )
    assert len(defined) == len(table) > 1
    for d, t in zip(defined, table, strict=True):
        assert d["n"] == t["n"]
        assert d["power_sum"] == pytest.approx(t["power_sum"], rel=1e-12)
        assert d["wind_max"] == t["wind_max"]
        assert d["energy_kwh"] == pytest.approx(t["energy_kwh"], rel=1e-12)
        assert d["covered_s"] == pytest.approx(t["covered_s"], rel=1e-12)


@pytest.mark.parametrize("level", [level.name for level in rollups.LEVELS])
async def test_park_aggregate_definitions_match_the_tables(
    db_pool: asyncpg.Pool, level: str
) -> None:
    """The park continuous-aggregate SELECT, run over the Apache tables, has the park
    tables' columns, and gives the rows windpark regrouped at ingest."""
    select = _migration().park_select(level)
    async with db_pool.acquire() as conn:
        defined = await _columns(conn, select)
        table = await _columns(conn, f"SELECT * FROM park_rollup_{level}")
    assert defined == table


async def test_park_aggregate_values_equal_the_maintained_park_rollups(
    db_pool: asyncpg.Pool, turbine_id: str
) -> None:
    start = datetime(2026, 4, 3, 7, 55, tzinfo=UTC)
    readings = make_series(turbine_id, start, 900, step_s=1.1)
    select = _migration().park_select("10m")
    async with db_pool.acquire() as conn:
        await write_batch(conn, [accepted(r) for r in readings], [])
    async with db_pool.acquire() as conn, conn.transaction(isolation="repeatable_read"):
        defined = await conn.fetch(
            f"SELECT * FROM ({select}) q WHERE bucket >= $1 AND bucket < $2 ORDER BY bucket",
            start - timedelta(minutes=5),
            start + timedelta(minutes=30),
        )
        table = await conn.fetch(
            "SELECT * FROM park_rollup_10m WHERE bucket >= $1 AND bucket < $2 ORDER BY bucket",
            start - timedelta(minutes=5),
            start + timedelta(minutes=30),
        )
    assert len(defined) == len(table) > 1
    for d, t in zip(defined, table, strict=True):
        assert d["bucket"] == t["bucket"]
        assert d["n"] == t["n"]
        assert d["turbines_reporting"] == t["turbines_reporting"]
        assert d["power_mean_sum"] == pytest.approx(t["power_mean_sum"], rel=1e-12)
        assert d["energy_kwh"] == pytest.approx(t["energy_kwh"], rel=1e-12)
        assert d["covered_s"] == pytest.approx(t["covered_s"], rel=1e-12)


def _continuous_only_statements() -> list[str]:
    """Every statement 0007 runs on the community license only, in its order."""
    migration = _migration()
    rollups_0002, parks_0005 = _migration("0002_rollups.py"), _migration("0005_park_rollups.py")
    statements = []
    source = None
    for level in migration.LEVELS:
        for name, select, policy in (
            (f"rollup_{level}", migration.cagg_select(level, source), rollups_0002.POLICIES),
            (f"park_rollup_{level}", migration.park_select(level), parks_0005.POLICIES),
        ):
            statements.append(select)
            statements.append(migration.continuous_aggregate_sql(name, select))
            statements.append(migration.continuous_policy_sql(name, *policy[level]))
            statements.append(migration.refresh_sql(name, "$1", "$2"))
        source = f"rollup_{level}"
    # Before the drop: the history the raw readings cannot rebuild; then their range.
    statements += [migration.lost_buckets_sql(), migration.RAW_RANGE_SQL]
    return statements


async def test_every_continuous_only_statement_of_0007_is_prepared(db_pool: asyncpg.Pool) -> None:
    """Prepared (parsed, typed and, but for DDL, planned), never executed: the SELECTs run
    over the Apache tables of the same names, the policy calls are typed against the
    extension's functions, and a wrong column or an untyped parameter fails here."""
    statements = _continuous_only_statements()
    assert len(statements) == 4 * 2 * len(rollups.LEVELS) + 2
    async with db_pool.acquire() as conn:
        for sql in statements:
            statement = await conn.prepare(sql)
            assert all(p.name != "unknown" for p in statement.get_parameters()), sql


def test_the_migration_refreshes_the_windows_the_code_does() -> None:
    """0007 keeps its own copy of ``rollups.refresh_windows`` (whole UTC days, each level
    ending at its current bucket): the same windows, at bucket edges and inside them."""
    migration = _migration()
    now = datetime(2026, 12, 2, 14, 21, 30, tzinfo=UTC)
    for first, last in (
        (datetime(2026, 11, 1, 8, 13, tzinfo=UTC), datetime(2026, 11, 20, 23, 59, tzinfo=UTC)),
        (datetime(2026, 11, 30, tzinfo=UTC), now - timedelta(seconds=1)),
        (now - timedelta(minutes=3), now),
    ):
        end = last + timedelta(microseconds=1)  # the code's windows take [start, end)
        code = [(lv.name, lo, hi) for lv, lo, hi in rollups.refresh_windows(first, end, now)]
        assert migration.refresh_windows(first, last, now) == code


def test_the_migration_sums_energy_as_the_ingest_does() -> None:
    """0007 keeps its own copy of the energy expressions (a migration must not change
    when the code does): they are the ones windpark.rollups writes with."""
    migration = _migration()
    from_readings = ", ".join(
        f"{e} AS {c}"
        for e, c in zip(rollups.ENERGY_EXPRESSIONS, rollups.ENERGY_COLUMNS, strict=True)
    )
    assert from_readings == migration.ENERGY_FROM_READINGS
    assert rollups.hold_s_sql("x.ts", "x.next_ts", "t.max_hold_s") in " ".join(
        migration.HOLDS_SQL.split()
    )


# Rebuild (``windpark backfill``) on both engines ----------------------------------------------

# A range of 4,000 s ending mid-day: shorter than the 1h and 1d buckets' sum, ending inside
# the 1d bucket it starts in (on the community license the day was left out, or the
# refresh refused the window as "too small").
REBUILT_START = datetime(2025, 9, 17, 10, 0, 7, tzinfo=UTC)
REBUILT_END = REBUILT_START + timedelta(seconds=4000)
REBUILT_READINGS = 2000  # every 2 s


async def _backfill_and_rebuild(conn: Connection, turbine_id: str) -> None:
    simulator = ParkSimulator(
        [SimTurbine(turbine_id, load_model(DEFAULT_MODEL))], seed=11, interval_s=2.0
    )
    rows = await backfill(conn, simulator, REBUILT_START, REBUILT_END, interval_s=2.0)
    assert rows == REBUILT_READINGS
    await rollups.rebuild(conn, REBUILT_START, REBUILT_END, [turbine_id])


async def test_a_rebuilt_range_ending_mid_day_reaches_every_level(
    db_pool: asyncpg.Pool, turbine_id: str
) -> None:
    async with db_pool.acquire() as conn:
        await _backfill_and_rebuild(conn, turbine_id)
        for level in rollups.LEVELS:
            n = await conn.fetchval(
                f"SELECT sum(n) FROM rollup_{level.name} WHERE turbine_id = $1", turbine_id
            )
            assert n == REBUILT_READINGS, level.name
            # The park row of the day holds this turbine's readings (and any other's).
            park_n = await conn.fetchval(
                f"SELECT sum(n) FROM park_rollup_{level.name} WHERE bucket >= $1 AND bucket < $2",
                rollups.floor_bucket(REBUILT_START, timedelta(days=1)),
                rollups.floor_bucket(REBUILT_START, timedelta(days=1)) + timedelta(days=1),
            )
            assert park_n >= REBUILT_READINGS, level.name


@pytest.mark.usefixtures("community_only")
async def test_a_rebuilt_range_is_materialized_not_left_to_real_time(
    db_pool: asyncpg.Pool, turbine_id: str
) -> None:
    """Each continuous aggregate's watermark (the end of its newest materialized bucket)
    passes the last rebuilt reading: every bucket of the range is stored, not left to
    real-time aggregation, so it stays right when raw chunks are dropped."""
    async with db_pool.acquire() as conn:
        await _backfill_and_rebuild(conn, turbine_id)
        watermarks = await conn.fetch(
            """
            SELECT user_view_name AS view, _timescaledb_functions.to_timestamp(
                _timescaledb_functions.cagg_watermark(mat_hypertable_id)) AS watermark
            FROM _timescaledb_catalog.continuous_agg
            """
        )
    assert len(watermarks) == 2 * len(rollups.LEVELS)
    for row in watermarks:
        assert row["watermark"] >= REBUILT_END, row["view"]
