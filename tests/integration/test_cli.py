"""The `windpark` command as a user runs it: read-only verbs print their answer and no
alembic chatter; `backfill` ends where the stored readings begin, says so, and refuses
an --end whose range holds stored readings."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest

from windpark import migrate, registry
from windpark.bootstrap import SetupSettings, drop_database, ensure_database

ROOT = Path(__file__).resolve().parents[2]


def run_windpark(
    *args: str, database: str | None = None, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    if database is not None:
        env["WINDPARK_DB__NAME"] = database
    return subprocess.run(
        [sys.executable, "-m", "windpark", *args],
        cwd=ROOT,
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize("verb", [("turbines", "list"), ("users", "list"), ("clients", "list")])
async def test_read_only_verbs_print_no_alembic_lines(
    prepared: SetupSettings, verb: tuple[str, ...]
) -> None:
    done = await asyncio.to_thread(run_windpark, *verb)
    assert done.returncode == 0, done.stderr
    assert "alembic" not in done.stderr
    assert done.stderr == ""


async def test_migrating_still_says_what_it_does(prepared: SetupSettings) -> None:
    done = await asyncio.to_thread(run_windpark, "migrate")
    assert done.returncode == 0, done.stderr
    assert "alembic.runtime.migration" in done.stderr
    assert "alembic.runtime.plugins" not in done.stderr


@pytest.fixture
async def scratch(setup_settings: SetupSettings) -> AsyncIterator[SetupSettings]:
    """A database of this test's own (a backfill writes for every registered turbine),
    at the head migration, with one turbine."""
    name = f"{setup_settings.db.name}_backfill"
    settings = setup_settings.model_copy(
        update={"db": setup_settings.db.model_copy(update={"name": name})}
    )
    await drop_database(settings)
    await ensure_database(settings)
    await asyncio.to_thread(migrate.upgrade, settings.db)
    conn = await asyncpg.connect(settings.db.dsn())
    try:
        await registry.add_turbine(conn, "WTG01", model="E-82/2300")
    finally:
        await conn.close()
    yield settings
    await drop_database(settings)


async def _span(settings: SetupSettings) -> tuple[int, datetime | None, datetime | None]:
    conn = await asyncpg.connect(settings.db.dsn())
    try:
        row = await conn.fetchrow("SELECT count(*) AS n, min(ts) AS a, max(ts) AS b FROM readings")
    finally:
        await conn.close()
    assert row is not None
    return row["n"], row["a"], row["b"]


async def test_backfill_ends_where_the_stored_readings_begin(scratch: SetupSettings) -> None:
    backfill = ("backfill", "--days", "0.001", "--interval", "10")  # 86.4 s: 9 readings
    first = await asyncio.to_thread(run_windpark, *backfill, database=scratch.db.name)
    assert first.returncode == 0, first.stderr
    assert "no readings stored yet: the history ends now" in first.stderr
    count, oldest, newest = await _span(scratch)
    assert count == 9
    assert oldest is not None
    assert newest is not None
    assert datetime.now(UTC) - newest < timedelta(seconds=30)

    second = await asyncio.to_thread(run_windpark, *backfill, database=scratch.db.name)
    assert second.returncode == 0, second.stderr
    assert f"readings are stored from {oldest.isoformat()}" in second.stderr
    assert "each backfill extends it further back" in second.stderr
    count, earliest, latest = await _span(scratch)
    assert count == 18
    assert latest == newest
    assert earliest is not None
    assert earliest < oldest

    # An --end inside what is stored: refused, nothing written.
    inside = (oldest + timedelta(seconds=20)).isoformat()
    refused = await asyncio.to_thread(
        run_windpark, *backfill, "--end", inside, database=scratch.db.name
    )
    assert refused.returncode == 2
    assert "readings are stored between" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert (await _span(scratch))[0] == 18
    # Before everything that is stored, it is honoured.
    before = (earliest - timedelta(seconds=30)).isoformat()
    honoured = await asyncio.to_thread(
        run_windpark, *backfill, "--end", before, database=scratch.db.name
    )
    assert honoured.returncode == 0, honoured.stderr
    assert f"the history ends at --end {before}" in honoured.stderr
    assert (await _span(scratch))[0] == 27
