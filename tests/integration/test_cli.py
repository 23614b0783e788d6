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

from tests.conftest import new_turbine_id
from windpark import migrate, registry, rollups
from windpark.bootstrap import SetupSettings, drop_database, ensure_database, register_park
from windpark.broker_admin import BrokerAdmin

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
        # Backfilled every 10 s below: each reading holds its whole interval.
        await registry.add_turbine(conn, "WTG01", model="E-82/2300", max_hold_s=30.0)
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


async def test_backfill_refuses_an_interval_longer_than_a_max_hold(
    scratch: SetupSettings,
) -> None:
    """WTG01 holds a reading for 30 s at most: at a 60 s interval half of its energy
    and coverage would be missing, so the backfill refuses and says how to fix it."""
    backfill = ("backfill", "--days", "0.01", "--interval", "60")
    refused = await asyncio.to_thread(run_windpark, *backfill, database=scratch.db.name)
    assert refused.returncode == 2
    assert "longer than the max hold of WTG01 (30 s)" in refused.stderr
    assert "windpark turbines set WTG01 --max-hold-s 180" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert (await _span(scratch))[0] == 0

    raised = await asyncio.to_thread(
        run_windpark, "turbines", "set", "WTG01", "--max-hold-s", "180", database=scratch.db.name
    )
    assert raised.returncode == 0, raised.stderr
    done = await asyncio.to_thread(run_windpark, *backfill, database=scratch.db.name)
    assert done.returncode == 0, done.stderr
    conn = await asyncpg.connect(scratch.db.dsn())
    try:
        # Every reading but the newest holds its whole interval.
        held = await conn.fetch("SELECT DISTINCT held_s FROM readings ORDER BY 1")
    finally:
        await conn.close()
    assert [row["held_s"] for row in held] == [0.0, 60.0]


async def _max_holds(settings: SetupSettings) -> dict[str, float]:
    conn = await asyncpg.connect(settings.db.dsn())
    try:
        return await rollups.max_holds(conn, await rollups._all_turbines(conn))
    finally:
        await conn.close()


async def test_turbines_add_and_set_take_a_max_hold(scratch: SetupSettings) -> None:
    ids = [new_turbine_id("hold"), new_turbine_id("hold")]
    try:
        added = await asyncio.to_thread(
            run_windpark, "turbines", "add", ids[0], "--max-hold-s", "12", database=scratch.db.name
        )
        assert added.returncode == 0, added.stdout + added.stderr
        plain = await asyncio.to_thread(
            run_windpark, "turbines", "add", ids[1], database=scratch.db.name
        )
        assert plain.returncode == 0, plain.stdout + plain.stderr
        assert {t: h for t, h in (await _max_holds(scratch)).items() if t in ids} == {
            ids[0]: 12.0,
            ids[1]: rollups.DEFAULT_MAX_HOLD_S,
        }
        changed = await asyncio.to_thread(
            run_windpark, "turbines", "set", ids[1], "--max-hold-s", "4.5", database=scratch.db.name
        )
        assert changed.returncode == 0, changed.stdout + changed.stderr
        assert (await _max_holds(scratch))[ids[1]] == 4.5
        listed = await asyncio.to_thread(run_windpark, "turbines", "list", database=scratch.db.name)
        assert "max hold 4.5 s" in listed.stdout
    finally:
        async with BrokerAdmin.open(scratch.broker) as admin:
            for tid in ids:
                await admin.delete_user(tid)
                (scratch.broker.secrets_dir / tid).unlink(missing_ok=True)
    unknown = await asyncio.to_thread(
        run_windpark, "turbines", "set", "nobody", "--max-hold-s", "4", database=scratch.db.name
    )
    assert unknown.returncode == 1
    assert "not registered" in unknown.stdout
    zero = await asyncio.to_thread(
        run_windpark, "turbines", "set", ids[1], "--max-hold-s", "0", database=scratch.db.name
    )
    assert zero.returncode == 2
    assert "must be more than 0" in zero.stderr


async def test_setup_registers_the_park_with_three_intervals_of_hold(
    scratch: SetupSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WINDPARK_INTERVAL_S", "5")
    settings = SetupSettings(park_size=2, db=scratch.db)
    assert await register_park(settings) == 1
    # WTG01 was registered before: left as it was.
    assert await _max_holds(scratch) == {"WTG01": 30.0, "WTG02": 15.0}
