"""Retention drops old raw readings and keeps the rollups (the long-term history)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from tests.factories import accepted, make_series
from windpark import retention, rollups
from windpark.storage import RejectedMessage, write_batch


async def test_old_raw_readings_go_rollups_stay(db_pool: asyncpg.Pool, turbine_id: str) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    old = make_series(turbine_id, now - timedelta(days=120), 30, step_s=60)
    recent = make_series(turbine_id, now - timedelta(days=3), 30, step_s=60, seq0=1000)
    old_reject = RejectedMessage(
        payload=b"{",
        reasons=[("malformed_json", "truncated", None)],
        source="amqp",
        received_at=now - timedelta(days=120),
        dedup_key=f"retention-test:{turbine_id}",
        turbine_id=turbine_id,
    )
    # A second reading of an old key with other values: a conflict received long ago.
    old_conflict = replace(
        accepted(
            old[0].model_copy(update={"power_kw": old[0].power_kw + 1.0}),
            key=f"conflict:{turbine_id}",
        ),
        received_at=now - timedelta(days=120),
    )
    async with db_pool.acquire() as conn:
        await write_batch(conn, [accepted(r) for r in old + recent], [old_reject])
        assert (await write_batch(conn, [old_conflict], [])).conflicts == 1
        # As `windpark backfill` does for old history: on the community license the old
        # buckets are otherwise only aggregated in real time from the raw rows (live
        # readings, at most 7 days old, are materialized by the refresh policies).
        await rollups.rebuild(conn, old[0].ts, old[-1].ts + timedelta(seconds=1))
        result = await retention.enforce(conn, 90)
        left = await conn.fetch(
            "SELECT ts FROM readings WHERE turbine_id = $1 ORDER BY ts", turbine_id
        )
        rollup_n = await conn.fetchval(
            "SELECT sum(n) FROM rollup_1h WHERE turbine_id = $1", turbine_id
        )
        rejects = await conn.fetchval(
            "SELECT count(*) FROM rejected_readings WHERE turbine_id = $1", turbine_id
        )
        conflicts = await conn.fetchval(
            "SELECT count(*) FROM conflicting_readings WHERE turbine_id = $1", turbine_id
        )
    assert result.dropped_chunks >= 1
    assert result.deleted_conflicts >= 1
    assert conflicts == 0
    assert [r["ts"] for r in left] == [r.ts for r in recent]
    assert rollup_n == 60  # the old readings' statistics outlive the raw rows
    assert rejects == 0


async def test_retention_refuses_to_drop_what_may_still_arrive(db_pool: asyncpg.Pool) -> None:
    async with db_pool.acquire() as conn:
        with pytest.raises(ValueError, match="at least 8 days"):
            await retention.enforce(conn, 7)


@pytest.mark.usefixtures("community_only")
async def test_retention_never_drops_what_a_refresh_policy_recomputes(
    db_pool: asyncpg.Pool,
) -> None:
    """drop_chunks marks the dropped range changed in the continuous aggregates; a refresh
    policy reaching into it (0002's reach 10 days back) would delete those days'
    rollups. So the period is raised to the policies' reach."""
    async with db_pool.acquire() as conn:
        await retention.enforce(conn, 8)
        drop_after = await conn.fetchval(retention.POLICY_INTERVAL_SQL)
        reach = await conn.fetchval(retention.REFRESH_REACH_SQL)
        await retention.enforce(conn, 90)  # as the migration left it
    assert reach == timedelta(days=10)
    assert drop_after == reach
