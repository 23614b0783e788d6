"""Two rollup engines, one contract: the continuous aggregates of the community license
(migration 0002) must have exactly the columns of the tables windpark maintains.

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
from windpark.storage import write_batch

ROOT = Path(__file__).resolve().parents[2]
PARK_MIGRATION = "0005_park_rollups.py"


def _migration(file: str = "0002_rollups.py") -> ModuleType:
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
        assert await rollups.engine(conn) == "windpark"  # this machine: Apache edition
        defined = await _columns(conn, migration._cagg_select(level, source))
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
            f"SELECT * FROM ({migration._cagg_select('10m', 'rollup_1m')}) q"
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


@pytest.mark.parametrize("level", [level.name for level in rollups.LEVELS])
async def test_park_aggregate_definitions_match_the_tables(
    db_pool: asyncpg.Pool, level: str
) -> None:
    """0005's continuous-aggregate SELECT, run over the Apache tables, has the park
    tables' columns, and gives the rows windpark regrouped at ingest."""
    select = _migration(PARK_MIGRATION).park_select(level)
    async with db_pool.acquire() as conn:
        defined = await _columns(conn, select)
        table = await _columns(conn, f"SELECT * FROM park_rollup_{level}")
    assert defined == table


async def test_park_aggregate_values_equal_the_maintained_park_rollups(
    db_pool: asyncpg.Pool, turbine_id: str
) -> None:
    start = datetime(2026, 4, 3, 7, 55, tzinfo=UTC)
    readings = make_series(turbine_id, start, 900, step_s=1.1)
    select = _migration(PARK_MIGRATION).park_select("10m")
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
