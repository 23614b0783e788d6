"""The ingest transaction against the real TimescaleDB: idempotency, rollups, latest values."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from prometheus_client import REGISTRY

from services.concentrator import metrics
from services.concentrator.ingest import JudgedBatch
from tests.factories import accepted, make_series
from windpark import contract, rollups
from windpark.contract import TurbineState
from windpark.db import Connection
from windpark.storage import RejectedMessage, write_batch


async def test_rewriting_a_batch_stores_each_reading_once(
    db_pool: asyncpg.Pool, turbine_id: str
) -> None:
    readings = make_series(turbine_id, datetime(2026, 1, 5, 10, tzinfo=UTC), 30)
    async with db_pool.acquire() as conn:
        first = await write_batch(conn, [accepted(r) for r in readings], [])
        again = await write_batch(
            conn, [accepted(r, key=f"redelivered-{r.seq}") for r in readings], []
        )
        count = await conn.fetchval(
            "SELECT count(*) FROM readings WHERE turbine_id = $1", turbine_id
        )
        dups = await conn.fetchval(
            "SELECT count(*) FROM duplicate_readings WHERE turbine_id = $1", turbine_id
        )
        n_1m = await conn.fetchval("SELECT sum(n) FROM rollup_1m WHERE turbine_id = $1", turbine_id)
    assert (first.stored, first.duplicates) == (30, 0)
    assert (again.stored, again.duplicates) == (0, 30)
    assert count == 30
    assert dups == 30
    # Duplicates must not be counted twice in the rollups.
    assert n_1m == 30


async def test_duplicate_within_one_batch_is_absorbed(
    db_pool: asyncpg.Pool, turbine_id: str
) -> None:
    [reading] = make_series(turbine_id, datetime(2026, 1, 6, tzinfo=UTC), 1)
    async with db_pool.acquire() as conn:
        result = await write_batch(
            conn, [accepted(reading, key="a"), accepted(reading, key="b")], []
        )
    assert (result.stored, result.duplicates) == (1, 1)


async def test_other_values_with_a_stored_key_are_kept_as_a_conflict(
    db_pool: asyncpg.Pool, turbine_id: str
) -> None:
    [reading] = make_series(turbine_id, datetime(2026, 1, 6, 1, tzinfo=UTC), 1)
    other = reading.model_copy(update={"seq": 99, "power_kw": reading.power_kw + 180.0})
    raw = contract.encode(other).replace(b",", b", ")  # the bytes as a sender spaced them
    async with db_pool.acquire() as conn:
        first = await write_batch(conn, [accepted(reading, key=f"{turbine_id}:first")], [])
        second = await write_batch(
            conn,
            [replace(accepted(other, key=f"{turbine_id}:second"), payload=raw, quality_flags=2)],
            [],
        )
        kept = await conn.fetch(
            "SELECT * FROM conflicting_readings WHERE turbine_id = $1", turbine_id
        )
        stored = await conn.fetch("SELECT seq FROM readings WHERE turbine_id = $1", turbine_id)
        dups = await conn.fetchval(
            "SELECT count(*) FROM duplicate_readings WHERE turbine_id = $1", turbine_id
        )
    assert (first.stored, first.conflicts) == (1, 0)
    assert (second.stored, second.duplicates, second.conflicts) == (0, 0, 1)
    [row] = kept
    assert bytes(row["payload"]) == raw
    assert (row["dedup_key"], row["ts"], row["seq"]) == (f"{turbine_id}:second", reading.ts, 99)
    assert row["power_kw"] == other.power_kw
    assert row["quality_flags"] == 2
    assert sorted(row["differs"]) == ["power_kw", "seq"]
    assert [r["seq"] for r in stored] == [reading.seq]  # the stored reading stays
    assert dups == 0


async def test_conflicts_and_duplicates_are_told_apart_in_one_batch(
    db_pool: asyncpg.Pool, turbine_id: str
) -> None:
    [reading] = make_series(turbine_id, datetime(2026, 1, 6, 2, tzinfo=UTC), 1)
    other = reading.model_copy(update={"temperature_c": reading.temperature_c + 1.0})
    third = reading.model_copy(update={"state": TurbineState.FAULT})
    batch = [
        accepted(reading, key=f"{turbine_id}:a"),
        accepted(other, key=f"{turbine_id}:b"),  # conflict
        accepted(reading, key=f"{turbine_id}:c"),  # the stored values again: duplicate
        accepted(other, key=f"{turbine_id}:d"),  # the conflict's values again: duplicate
        accepted(other, key=f"{turbine_id}:b"),  # the conflicting message itself, redelivered
        accepted(third, key=f"{turbine_id}:e"),  # another conflict
    ]
    async with db_pool.acquire() as conn:
        result = await write_batch(conn, batch, [])
        again = await write_batch(conn, batch, [])
        conflicts = await conn.fetch(
            "SELECT dedup_key FROM conflicting_readings WHERE turbine_id = $1 ORDER BY 1",
            turbine_id,
        )
        dups = await conn.fetch(
            "SELECT dedup_key FROM duplicate_readings WHERE turbine_id = $1 ORDER BY 1",
            turbine_id,
        )
    assert (result.stored, result.conflicts, result.duplicates) == (1, 2, 3)
    # The whole batch redelivered: nothing stored or kept twice.
    assert (again.stored, again.conflicts) == (0, 0)
    assert [r["dedup_key"] for r in conflicts] == [f"{turbine_id}:{k}" for k in "be"]
    assert [r["dedup_key"] for r in dups] == [f"{turbine_id}:{k}" for k in "abcde"]


async def test_new_readings_beside_a_conflict_are_stored_not_filed(
    db_pool: asyncpg.Pool, turbine_id: str
) -> None:
    readings = make_series(turbine_id, datetime(2026, 1, 6, 3, tzinfo=UTC), 10)
    other = readings[0].model_copy(update={"power_kw": readings[0].power_kw + 1.0})
    async with db_pool.acquire() as conn:
        await write_batch(conn, [accepted(readings[0])], [])
        result = await write_batch(
            conn,
            [accepted(r) for r in readings[1:5]]
            + [accepted(other, key=f"{turbine_id}:other")]
            + [accepted(r) for r in readings[5:]],
            [],
        )
    assert (result.stored, result.conflicts, result.duplicates) == (9, 1, 0)


async def test_redelivered_reject_is_stored_once(db_pool: asyncpg.Pool, turbine_id: str) -> None:
    reject = RejectedMessage(
        payload=b'{"v": 1, "power_kw": NaN',
        reasons=[("malformed_json", "not valid JSON", None)],
        source="amqp",
        received_at=datetime.now(UTC),
        dedup_key=f"amqp:{turbine_id}:7:1",
        turbine_id=turbine_id,
    )
    async with db_pool.acquire() as conn:
        await write_batch(conn, [], [reject])
        await write_batch(conn, [], [reject])
        rows = await conn.fetch(
            "SELECT payload, reasons, details, source FROM rejected_readings WHERE turbine_id = $1",
            turbine_id,
        )
    assert len(rows) == 1
    assert rows[0]["payload"] == reject.payload
    assert rows[0]["reasons"] == ["malformed_json"]
    assert rows[0]["source"] == "amqp"


async def test_latest_reading_ignores_late_data(db_pool: asyncpg.Pool, turbine_id: str) -> None:
    readings = make_series(turbine_id, datetime(2026, 1, 7, tzinfo=UTC), 10)
    async with db_pool.acquire() as conn:
        await write_batch(conn, [accepted(r) for r in readings[5:]], [])
        await write_batch(conn, [accepted(r) for r in readings[:5]], [])  # arrives late
        latest = await conn.fetchrow(
            "SELECT ts, seq FROM latest_readings WHERE turbine_id = $1", turbine_id
        )
    assert latest is not None
    assert latest["seq"] == readings[-1].seq
    assert latest["ts"] == readings[-1].ts


@pytest.mark.parametrize("level", [level.name for level in rollups.LEVELS])
async def test_every_rollup_level_equals_raw_statistics(
    db_pool: asyncpg.Pool, turbine_id: str, level: str
) -> None:
    start = datetime(2026, 2, 1, 23, 50, tzinfo=UTC)
    readings = make_series(turbine_id, start, 1500, step_s=1.3)  # crosses minutes, hours, a day
    async with db_pool.acquire() as conn:
        # In three batches, the last one late and overlapping (duplicates) to exercise merges.
        await write_batch(conn, [accepted(r) for r in readings[:700]], [])
        await write_batch(conn, [accepted(r) for r in readings[1000:]], [])
        await write_batch(conn, [accepted(r, key=f"late-{r.seq}") for r in readings[600:1000]], [])
        width = rollups.LEVEL_BY_NAME[level].width
        raw = await conn.fetch(
            f"""
            SELECT time_bucket(INTERVAL '{width}', ts) AS bucket, count(*) AS n,
                   avg(power_kw) AS p_avg, stddev_samp(power_kw) AS p_std,
                   min(power_kw) AS p_min, max(power_kw) AS p_max,
                   avg(wind_speed_ms) AS w_avg, stddev_samp(temperature_c) AS t_std
            FROM readings WHERE turbine_id = $1 GROUP BY 1 ORDER BY 1
            """,
            turbine_id,
        )
        rolled = await conn.fetch(
            f"""
            SELECT bucket, n, power_avg_kw, power_std_kw, power_min_kw, power_max_kw,
                   wind_speed_avg_ms, temperature_std_c
            FROM rollup_{level}_stats WHERE turbine_id = $1 ORDER BY bucket
            """,
            turbine_id,
        )
    assert [r["bucket"] for r in rolled] == [r["bucket"] for r in raw]
    for got, want in zip(rolled, raw, strict=True):
        assert got["n"] == want["n"]
        assert math.isclose(got["power_avg_kw"], want["p_avg"], rel_tol=1e-9)
        assert got["power_min_kw"] == want["p_min"]
        assert got["power_max_kw"] == want["p_max"]
        assert math.isclose(got["wind_speed_avg_ms"], want["w_avg"], rel_tol=1e-9)
        if want["n"] > 1:
            assert math.isclose(got["power_std_kw"], want["p_std"], rel_tol=1e-6, abs_tol=1e-9)
            assert math.isclose(got["temperature_std_c"], want["t_std"], rel_tol=1e-6, abs_tol=1e-9)


async def test_rebuild_matches_incremental_rollups(db_pool: asyncpg.Pool, turbine_id: str) -> None:
    start = datetime(2026, 3, 1, tzinfo=UTC)
    readings = make_series(turbine_id, start, 400, step_s=10)
    async with db_pool.acquire() as conn:
        await write_batch(conn, [accepted(r) for r in readings], [])
        before = await conn.fetch(
            "SELECT * FROM rollup_10m WHERE turbine_id = $1 ORDER BY bucket", turbine_id
        )
        await rollups.rebuild(conn, start, start + timedelta(seconds=4000))
        after = await conn.fetch(
            "SELECT * FROM rollup_10m WHERE turbine_id = $1 ORDER BY bucket", turbine_id
        )
    assert len(before) == len(after) > 0
    for b, a in zip(before, after, strict=True):
        assert b["n"] == a["n"]
        assert math.isclose(b["power_sum"], a["power_sum"], rel_tol=1e-12)


async def test_failed_refresh_after_the_commit_does_not_fail_the_batch(
    db_pool: asyncpg.Pool, turbine_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Community license: the continuous-aggregate refresh after the commit fails. The
    batch is committed: write_batch returns normally, says so, and the concentrator's
    metric counts it, so the batch is not written again as duplicates."""

    async def refresh_fails(conn: Connection, timestamps: Sequence[datetime]) -> None:
        raise asyncpg.exceptions.FeatureNotSupportedError("refresh refused")

    monkeypatch.setattr(rollups, "refresh_stale", refresh_fails)
    readings = make_series(turbine_id, datetime(2026, 1, 9, tzinfo=UTC), 6)
    failures_before = refresh_failures()
    async with db_pool.acquire() as conn:
        # The readings' statement of the community engine runs on this machine too;
        # only the refresh after it (continuous aggregates) needs that license.
        result = await write_batch(
            conn, [accepted(r) for r in readings], [], rollup_engine="timescaledb"
        )
        stored = await conn.fetchval(
            "SELECT count(*) FROM readings WHERE turbine_id = $1", turbine_id
        )
    assert (result.stored, result.duplicates, result.refresh_failed) == (6, 0, True)
    assert stored == 6
    metrics.observe_batch(JudgedBatch(accepted=[accepted(r) for r in readings]), result, 0.01)
    assert refresh_failures() == failures_before + 1


def refresh_failures() -> float:
    value = REGISTRY.get_sample_value("windpark_concentrator_refresh_failures_total")
    assert value is not None
    return value
