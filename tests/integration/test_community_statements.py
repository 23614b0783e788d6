"""Every SQL statement that runs only on the community license (continuous aggregates,
TimescaleDB policies) is prepared here, against whichever build the suite runs on.

This machine's PostgreSQL has the Apache build, which refuses continuous aggregates, so
the community branch cannot run in CI; but ``prepare`` (parse, type and plan, no
execution) works on the Apache build too: the procedures and policy functions exist in
its catalog and the relation names resolve (the Apache tables have the aggregates'
names and columns). An untyped parameter, a wrong column or a wrong relation fails here.
The aggregates' defining SELECTs are checked in test_rollup_engines.py.
"""

from __future__ import annotations

import asyncpg
import pytest

from windpark import retention, rollups, storage


def _community_statements() -> list[tuple[str, str]]:
    """(name, SQL) of each statement of the community branch, from the code that runs it."""
    statements = [
        (f"refresh {view}", rollups.refresh_sql(view))
        for level in rollups.LEVELS
        for view in rollups.continuous_views(level)
    ]
    statements.append(("watermarks", rollups.WATERMARKS_SQL))
    statements += [(f"retention {i}", sql) for i, sql in enumerate(retention.COMMUNITY_STATEMENTS)]
    statements.append(("retention drop_chunks", retention.DROP_CHUNKS_SQL))
    statements.append(("ingest without rollups", storage.INSERT_READINGS_SQL["timescaledb"]))
    return statements


@pytest.mark.parametrize(("name", "sql"), _community_statements(), ids=lambda v: str(v)[:40])
async def test_community_statement_is_typed_and_planned(
    db_pool: asyncpg.Pool, name: str, sql: str
) -> None:
    async with db_pool.acquire() as conn:
        statement = await conn.prepare(sql)
        # Every parameter got a type from the statement itself (none is left "unknown").
        assert all(p.name != "unknown" for p in statement.get_parameters()), name


@pytest.mark.parametrize("view", [v for lv in rollups.LEVELS for v in rollups.continuous_views(lv)])
async def test_refresh_windows_are_typed_timestamptz(db_pool: asyncpg.Pool, view: str) -> None:
    """refresh_continuous_aggregate takes its window as "any": the statement must type it,
    as the datetimes ``refresh_continuous`` passes."""
    async with db_pool.acquire() as conn:
        statement = await conn.prepare(rollups.refresh_sql(view))
        assert [p.name for p in statement.get_parameters()] == ["timestamptz", "timestamptz"]


async def test_prepare_catches_an_untyped_refresh_window(db_pool: asyncpg.Pool) -> None:
    """The defect the tests above guard against (``windpark backfill`` crashed on it on
    the community license) is caught by a prepare on the Apache build."""
    async with db_pool.acquire() as conn:
        with pytest.raises(asyncpg.IndeterminateDatatypeError):
            await conn.prepare("CALL refresh_continuous_aggregate('rollup_1m', $1, $2)")
