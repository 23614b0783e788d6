"""Migration 0007 on the community license recreates the continuous aggregates: the
rollup history they hold must survive it (refreshed from the raw readings), and history
the raw readings can no longer give back must stop the migration unless accepted.

Run against a community-license server (skipped on the Apache build); the statements
are prepared on both in test_rollup_engines.py."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime, timedelta

import asyncpg
import pytest

from windpark import migrate, rollups
from windpark.bootstrap import SetupSettings, drop_database, ensure_database

pytestmark = pytest.mark.usefixtures("community_only")

TURBINE = "WTG01"
# Older than every refresh policy's reach (8-10 days): only a full refresh keeps it.
OLD_DAYS = 20
RECENT_DAYS = 2
READINGS_PER_DAY = 120


@pytest.fixture
async def at_0006(setup_settings: SetupSettings) -> AsyncIterator[SetupSettings]:
    """A database of this test's own at 0006, with readings 20 and 2 days old whose
    buckets are materialized, as a running park's would be."""
    name = f"{setup_settings.db.name}_m0007"
    settings = setup_settings.model_copy(
        update={"db": setup_settings.db.model_copy(update={"name": name})}
    )
    await drop_database(settings)
    await ensure_database(settings)
    await asyncio.to_thread(migrate.upgrade, settings.db, "0006")
    conn = await asyncpg.connect(settings.db.dsn())
    try:
        # The schema of 0006: no max_hold_s, no held_s (the code writes the head's).
        await conn.execute(
            "INSERT INTO turbines (turbine_id, name, model, rated_power_kw)"
            " VALUES ($1, $1, 'E-82/2300', 2300)",
            TURBINE,
        )
        for days in (OLD_DAYS, RECENT_DAYS):
            await conn.execute(
                """
                INSERT INTO readings (ts, turbine_id, seq, power_kw, wind_speed_ms,
                                      temperature_c, state, source, received_at)
                SELECT date_trunc('day', now()) - make_interval(days => $2) + i * INTERVAL '1 s',
                       $1, i, 1000.0, 9.0, 12.0, 'running', 'backfill', now()
                FROM generate_series(0, $3 - 1) i
                """,
                TURBINE,
                days,
                READINGS_PER_DAY,
            )
        span = await conn.fetchrow("SELECT min(ts) AS first, max(ts) AS last FROM readings")
        assert span is not None
        await rollups.refresh_continuous(conn, span["first"], span["last"] + timedelta(seconds=1))
    finally:
        await conn.close()
    yield settings
    await drop_database(settings)


async def _run_policies(conn: asyncpg.Connection) -> None:
    """Every refresh policy's job once, finest aggregate first, as the scheduler would:
    each refreshes only its last 8-10 days."""
    jobs = await conn.fetch(
        """
        SELECT j.job_id FROM timescaledb_information.jobs j
        JOIN timescaledb_information.continuous_aggregates c
            ON c.materialization_hypertable_name = j.hypertable_name
        WHERE j.proc_name = 'policy_refresh_continuous_aggregate'
        ORDER BY CASE split_part(c.view_name, '_', -1)
                     WHEN '1m' THEN 1 WHEN '10m' THEN 2 WHEN '1h' THEN 3 ELSE 4 END,
                 c.view_name LIKE 'park_%'
        """
    )
    assert len(jobs) == 8
    for job in jobs:
        await conn.execute("CALL run_job($1)", job["job_id"])


async def _readings_per_view(conn: asyncpg.Connection, older_than: datetime) -> dict[str, int]:
    """Readings counted by each aggregate in buckets before ``older_than``."""
    counts = {}
    for level in rollups.LEVELS:
        for view in rollups.continuous_views(level):
            counts[view] = await conn.fetchval(
                f"SELECT coalesce(sum(n), 0) FROM {view} WHERE bucket < $1", older_than
            )
    return counts


async def test_rollup_history_survives_upgrade_and_downgrade(at_0006: SetupSettings) -> None:
    await asyncio.to_thread(migrate.upgrade, at_0006.db, "0007")
    conn = await asyncpg.connect(at_0006.db.dsn())
    try:
        await _run_policies(conn)
        cutoff = await conn.fetchval("SELECT now() - INTERVAL '15 days'")
        assert set((await _readings_per_view(conn, cutoff)).values()) == {READINGS_PER_DAY}
        # The energy of the old readings too, at 1000 kW: 119 holds of 1 s, and the
        # last one's until the next reading (days later), capped at the default max hold.
        energy = await conn.fetchval(
            "SELECT sum(energy_kwh) FROM rollup_1d WHERE bucket < $1", cutoff
        )
        held_s = READINGS_PER_DAY - 1 + rollups.DEFAULT_MAX_HOLD_S
        assert energy == pytest.approx(held_s * 1000.0 / 3600.0)
    finally:
        await conn.close()

    await asyncio.to_thread(migrate.downgrade, at_0006.db, "0006")
    conn = await asyncpg.connect(at_0006.db.dsn())
    try:
        await _run_policies(conn)
        assert set((await _readings_per_view(conn, cutoff)).values()) == {READINGS_PER_DAY}
    finally:
        await conn.close()


async def test_history_older_than_the_raw_readings_stops_the_upgrade(
    at_0006: SetupSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    conn = await asyncpg.connect(at_0006.db.dsn())
    try:
        # Retention dropped the old raw rows: the aggregates are their only copy.
        await conn.execute("DELETE FROM readings WHERE ts < now() - INTERVAL '15 days'")
    finally:
        await conn.close()
    monkeypatch.delenv("WINDPARK_MIGRATE_ALLOW_ROLLUP_LOSS", raising=False)
    with pytest.raises(RuntimeError, match="WINDPARK_MIGRATE_ALLOW_ROLLUP_LOSS=1"):
        await asyncio.to_thread(migrate.upgrade, at_0006.db, "0007")
    conn = await asyncpg.connect(at_0006.db.dsn())
    try:
        assert await conn.fetchval("SELECT version_num FROM alembic_version") == "0006"
        cutoff = await conn.fetchval("SELECT now() - INTERVAL '15 days'")
        # Nothing dropped: the history is still there.
        assert (
            await conn.fetchval("SELECT sum(n) FROM rollup_1d WHERE bucket < $1", cutoff)
            == READINGS_PER_DAY
        )
    finally:
        await conn.close()

    monkeypatch.setenv("WINDPARK_MIGRATE_ALLOW_ROLLUP_LOSS", "1")
    await asyncio.to_thread(migrate.upgrade, at_0006.db, "0007")
    conn = await asyncpg.connect(at_0006.db.dsn())
    try:
        assert await conn.fetchval("SELECT version_num FROM alembic_version") == "0007"
    finally:
        await conn.close()
