"""The schema belongs to the migrations: they go up, down and up again on a real database."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from windpark import migrate
from windpark.bootstrap import SetupSettings, drop_database, ensure_database

TABLES = {
    "turbines",
    "readings",
    "rejected_readings",
    "duplicate_readings",
    "conflicting_readings",  # migration 0006
    "latest_readings",
    "rollup_1m",
    "rollup_10m",
    "rollup_1h",
    "rollup_1d",
    "park_rollup_1m",
    "park_rollup_10m",
    "park_rollup_1h",
    "park_rollup_1d",
    "api_users",
    "api_clients",
}


async def _tables(settings: SetupSettings) -> set[str]:
    conn = await asyncpg.connect(settings.db.dsn())
    try:
        rows = await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        return {r["tablename"] for r in rows} - {"alembic_version"}
    finally:
        await conn.close()


async def _hypertables(settings: SetupSettings) -> set[str]:
    conn = await asyncpg.connect(settings.db.dsn())
    try:
        rows = await conn.fetch("SELECT hypertable_name FROM timescaledb_information.hypertables")
        return {r["hypertable_name"] for r in rows}
    finally:
        await conn.close()


@pytest.fixture
async def scratch(setup_settings: SetupSettings) -> SetupSettings:
    settings = setup_settings.model_copy(
        update={"db": setup_settings.db.model_copy(update={"name": "windpark_migrations_test"})}
    )
    await drop_database(settings)
    await ensure_database(settings)
    return settings


@pytest.mark.usefixtures("apache_only")  # the rollups are tables and hypertables there
async def test_upgrade_downgrade_upgrade(scratch: SetupSettings) -> None:
    await asyncio.to_thread(migrate.upgrade, scratch.db)
    assert await _tables(scratch) == TABLES
    assert {"readings", "rollup_1m", "rollup_1d", "park_rollup_1h"} <= await _hypertables(scratch)
    await asyncio.to_thread(migrate.downgrade, scratch.db, "base")
    assert await _tables(scratch) == set()
    await asyncio.to_thread(migrate.upgrade, scratch.db)
    assert await _tables(scratch) == TABLES
    await drop_database(scratch)
