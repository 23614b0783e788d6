"""The concentrator against the real broker and database: ack after commit, rejects kept,
no loss and no double counting across crashes and database restarts."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from aio_pika.abc import AbstractRobustConnection

from services.concentrator.config import Settings
from services.concentrator.ingest import JudgedBatch
from services.concentrator.main import Concentrator, lifespan
from tests.conftest import new_turbine_id
from tests.factories import accepted, make_series
from windpark import contract, rollups
from windpark.bootstrap import SetupSettings
from windpark.publishing import ReadingPublisher


@contextlib.asynccontextmanager
async def running_concentrator(**overrides: object) -> AsyncIterator[Concentrator]:
    settings = Settings(**overrides)  # type: ignore[arg-type]
    stop = asyncio.Event()
    async with lifespan(settings) as resources:
        concentrator = Concentrator(settings, resources)
        await concentrator.start()
        task = asyncio.create_task(concentrator.run_batches(stop))
        try:
            yield concentrator
        finally:
            stop.set()
            await concentrator.stop()
            await task


async def eventually(check: Callable[[], Awaitable[bool]], timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"condition not met within {timeout_s} s")


async def publish_all(
    connection: AbstractRobustConnection, items: list[tuple[str, bytes, str]]
) -> None:
    publisher = ReadingPublisher(connection)
    await publisher.open()
    try:
        await asyncio.gather(
            *(publisher.publish(body, turbine_id=t, message_id=mid) for t, body, mid in items)
        )
    finally:
        await publisher.close()


async def count(pool: asyncpg.Pool, sql: str, *args: object) -> int:
    async with pool.acquire() as conn:
        value = await conn.fetchval(sql, *args)
    return int(value or 0)


async def ready_messages(connection: AbstractRobustConnection) -> int:
    channel = await connection.channel()
    try:
        queue = await channel.declare_queue(contract.QUEUE, passive=True)
        return int(queue.declaration_result.message_count or 0)
    finally:
        await channel.close()


def series_messages(
    turbine_id: str, n: int, start: datetime | None = None
) -> list[tuple[str, bytes, str]]:
    start = start or datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
    return [
        (turbine_id, contract.encode(r), f"{turbine_id}:{r.seq}:0")
        for r in make_series(turbine_id, start, n)
    ]


async def test_valid_readings_are_stored_and_acked(
    db_pool: asyncpg.Pool, amqp: AbstractRobustConnection, turbine_id: str
) -> None:
    async with running_concentrator():
        await publish_all(amqp, series_messages(turbine_id, 40))
        await eventually(
            lambda: _equals(
                count(db_pool, "SELECT count(*) FROM readings WHERE turbine_id=$1", turbine_id), 40
            )
        )
        await eventually(lambda: _equals(ready_messages(amqp), 0))
    assert (
        await count(db_pool, "SELECT sum(n) FROM rollup_1m WHERE turbine_id=$1", turbine_id) == 40
    )
    assert (
        await count(db_pool, "SELECT seq FROM latest_readings WHERE turbine_id=$1", turbine_id)
        == 39
    )


async def test_bad_messages_are_kept_raw_with_reasons(
    db_pool: asyncpg.Pool, amqp: AbstractRobustConnection, turbine_id: str
) -> None:
    bad = [
        (
            turbine_id,
            b'{"v": 1, "turbine_id": "' + turbine_id.encode() + b'", "seq": ',
            f"{turbine_id}:0:0",
        ),
        (turbine_id, b'{"v": 1, "power_kw": NaN}', f"{turbine_id}:1:0"),
        (turbine_id, b"\xff\xfe not json", f"{turbine_id}:2:0"),
    ]
    async with running_concentrator():
        await publish_all(amqp, bad)
        await eventually(
            lambda: _equals(
                count(
                    db_pool,
                    "SELECT count(*) FROM rejected_readings WHERE turbine_id=$1",
                    turbine_id,
                ),
                3,
            )
        )
    async with db_pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT payload, reasons, source, dedup_key FROM rejected_readings"
            " WHERE turbine_id=$1 ORDER BY dedup_key",
            turbine_id,
        )
    assert [r["payload"] for r in rows] == [body for _, body, _ in bad]
    assert all(r["source"] == "amqp" for r in rows)
    assert all(r["reasons"] for r in rows)
    assert "malformed_json" in rows[0]["reasons"]
    assert "non_finite" in rows[1]["reasons"]


async def test_body_naming_another_turbine_is_rejected(
    db_pool: asyncpg.Pool, amqp: AbstractRobustConnection, turbine_id: str
) -> None:
    [(_, body, _)] = series_messages(turbine_id, 1)
    other = "OTHER-" + turbine_id
    async with running_concentrator():
        # Published under another turbine's routing key: the transport's identity wins.
        await publish_all(amqp, [(other, body, f"{other}:0:0")])
        await eventually(
            lambda: _equals(
                count(
                    db_pool,
                    "SELECT count(*) FROM rejected_readings WHERE dedup_key=$1",
                    f"amqp:{other}:0:0",
                ),
                1,
            )
        )
    async with db_pool.acquire() as conn:
        reasons = await conn.fetchval(
            "SELECT reasons FROM rejected_readings WHERE dedup_key=$1", f"amqp:{other}:0:0"
        )
    assert "turbine_mismatch" in reasons
    assert (
        await count(db_pool, "SELECT count(*) FROM readings WHERE turbine_id=$1", turbine_id) == 0
    )


async def test_crash_before_commit_loses_nothing_and_counts_nothing_twice(
    db_pool: asyncpg.Pool, amqp: AbstractRobustConnection, turbine_id: str, prepared: SetupSettings
) -> None:
    messages = series_messages(turbine_id, 50)
    locker = await asyncpg.connect(prepared.db.dsn())
    try:
        settings = Settings()
        stop = asyncio.Event()
        async with lifespan(settings) as resources:
            crashed = Concentrator(settings, resources)
            await crashed.start()
            # Hold the writes: the concentrator's transaction waits on this lock.
            tx = locker.transaction()
            await tx.start()
            await locker.execute("LOCK TABLE readings IN ACCESS EXCLUSIVE MODE")
            task = asyncio.create_task(crashed.run_batches(stop))
            await publish_all(amqp, messages)
            # All 50 delivered (none ready) but none stored: they are unacked.
            await eventually(lambda: _equals(ready_messages(amqp), 0))
            await asyncio.sleep(0.5)
            assert (
                await count(
                    db_pool,
                    "SELECT count(*) FROM rejected_readings WHERE turbine_id=$1",
                    turbine_id,
                )
                == 0
            )
            # The crash: the process dies with its batch uncommitted.
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        # The broker took the unacked messages back.
        await eventually(lambda: _equals(ready_messages(amqp), 50))
        await tx.rollback()
    finally:
        await locker.close()
    async with running_concentrator():
        await eventually(
            lambda: _equals(
                count(db_pool, "SELECT count(*) FROM readings WHERE turbine_id=$1", turbine_id), 50
            )
        )
        await eventually(lambda: _equals(ready_messages(amqp), 0))
    assert (
        await count(db_pool, "SELECT sum(n) FROM rollup_1h WHERE turbine_id=$1", turbine_id) == 50
    )


async def test_commit_without_ack_is_absorbed_as_duplicates(
    db_pool: asyncpg.Pool, amqp: AbstractRobustConnection, turbine_id: str
) -> None:
    messages = series_messages(turbine_id, 20)
    async with running_concentrator():
        await publish_all(amqp, messages)
        await eventually(
            lambda: _equals(
                count(db_pool, "SELECT count(*) FROM readings WHERE turbine_id=$1", turbine_id), 20
            )
        )
    # The same messages again (as a redelivery after a lost ack would bring them).
    redelivered = [(t, body, f"{mid}:again") for t, body, mid in messages]
    async with running_concentrator():
        await publish_all(amqp, redelivered)
        await eventually(
            lambda: _equals(
                count(
                    db_pool,
                    "SELECT count(*) FROM duplicate_readings WHERE turbine_id=$1",
                    turbine_id,
                ),
                20,
            )
        )
    assert (
        await count(db_pool, "SELECT count(*) FROM readings WHERE turbine_id=$1", turbine_id) == 20
    )
    assert (
        await count(db_pool, "SELECT sum(n) FROM rollup_1m WHERE turbine_id=$1", turbine_id) == 20
    )


async def test_database_restart_is_survived_without_loss(
    db_pool: asyncpg.Pool, amqp: AbstractRobustConnection, turbine_id: str, prepared: SetupSettings
) -> None:
    first, second = series_messages(turbine_id, 60)[:30], series_messages(turbine_id, 60)[30:]
    async with running_concentrator(db_retry_initial_s=0.05, db_retry_max_s=0.2):
        await publish_all(amqp, first)
        await eventually(
            lambda: _equals(
                count(db_pool, "SELECT count(*) FROM readings WHERE turbine_id=$1", turbine_id), 30
            )
        )
        # Every concentrator connection is killed, as a PostgreSQL restart would.
        admin = await asyncpg.connect(prepared.admin_dsn)
        try:
            killed = await admin.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE application_name = 'windpark-concentrator'"
            )
        finally:
            await admin.close()
        assert killed >= 1
        await publish_all(amqp, second)
        await eventually(
            lambda: _equals(
                count(db_pool, "SELECT count(*) FROM readings WHERE turbine_id=$1", turbine_id), 60
            )
        )
    assert (
        await count(db_pool, "SELECT sum(n) FROM rollup_1m WHERE turbine_id=$1", turbine_id) == 60
    )


async def _equals(value: Awaitable[int], expected: int) -> bool:
    return await value == expected


@pytest.fixture(autouse=True)
async def _empty_queue(amqp: AbstractRobustConnection) -> None:
    """Each test starts from an empty queue (a failed test may leave messages behind)."""
    channel = await amqp.channel()
    queue = await channel.declare_queue(contract.QUEUE, passive=True)
    await queue.purge()
    await channel.close()


async def test_reading_of_an_unregistered_turbine_is_a_storage_error_reject(
    db_pool: asyncpg.Pool, turbine_id: str
) -> None:
    """The database refuses the row (foreign key); the batch falls back to one by one:
    the registered turbine's readings are stored, the other's kept as a reject, and
    nothing is filed as a conflict."""
    stranger = new_turbine_id("unregistered")
    start = datetime(2026, 2, 3, 4, tzinfo=UTC)
    readings = make_series(turbine_id, start, 5) + make_series(stranger, start, 5)
    batch = JudgedBatch(accepted=[accepted(r, key=f"{r.turbine_id}:{r.seq}") for r in readings])
    settings = Settings()
    async with lifespan(settings) as resources:
        concentrator = Concentrator(settings, resources)
        async with db_pool.acquire() as conn:
            concentrator.rollup_engine = await rollups.engine(conn)
        result = await concentrator._write(batch)
    assert (result.stored, result.rejected, result.conflicts) == (5, 5, 0)
    stored = await count(db_pool, "SELECT count(*) FROM readings WHERE turbine_id=$1", turbine_id)
    assert stored == 5
    rejects = await db_pool.fetch(
        "SELECT reasons FROM rejected_readings WHERE turbine_id = $1", stranger
    )
    assert [r["reasons"] for r in rejects] == [["storage_error"]] * 5
    assert (
        await count(
            db_pool,
            "SELECT count(*) FROM conflicting_readings WHERE turbine_id = ANY($1::text[])",
            [turbine_id, stranger],
        )
        == 0
    )
