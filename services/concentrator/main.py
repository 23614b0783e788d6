"""The concentrator: consume readings, judge them, store them in batches, ack after commit.

Delivery guarantees, written out where they are kept:
- Messages are acked only after the transaction that stored them (valid, flagged,
  duplicate or rejected) has committed. A crash before the ack gives a redelivery,
  which the idempotent writes absorb: duplicates, never loss.
- While PostgreSQL is unreachable the batch is retried with backoff and nothing is
  acked or requeued: the broker stops delivering at the prefetch limit, so the
  delivery limit is not burned and good data is not dead-lettered.
- After a broker reconnect, messages delivered on the old channel cannot be acked
  (their delivery tags died with it); the broker redelivers them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TypeVar

import aio_pika
import asyncpg
from aio_pika.abc import AbstractIncomingMessage, AbstractRobustConnection
from aiormq.exceptions import AMQPError, ChannelInvalidStateError

from services.concentrator import metrics
from services.concentrator.config import Settings
from services.concentrator.ingest import (
    Inbound,
    JudgedBatch,
    claimed_turbine_id,
    judge_batch,
    store,
)
from windpark import contract, registry, retention, rollups, topology
from windpark.amqp_connection import connect_robust
from windpark.storage import BatchResult, RejectedMessage
from windpark.validation import TurbineInfo, TurbineTrack, track_from_history

log = logging.getLogger("windpark.concentrator")

# Errors after which the same transaction may succeed later: the database is
# restarting, unreachable, or asked us to retry.
TRANSIENT_DB_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.InterfaceError,
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.exceptions.InsufficientResourcesError,
    asyncpg.exceptions.TransactionRollbackError,
)
RETENTION_ERRORS: tuple[type[BaseException], ...] = (*TRANSIENT_DB_ERRORS, asyncpg.PostgresError)
TRACK_HISTORY_READINGS = 5
T = TypeVar("T")


@dataclass(slots=True)
class Resources:
    pool: asyncpg.Pool
    connection: AbstractRobustConnection


async def _retry_forever(what: str, attempt: Callable[[], Awaitable[T]], settings: Settings) -> T:
    delay = settings.db_retry_initial_s
    while True:
        try:
            return await attempt()
        except TRANSIENT_DB_ERRORS as exc:
            metrics.DB_RETRIES.inc()
            log.warning("%s failed (%r); retrying in %.1f s", what, exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, settings.db_retry_max_s)


@contextlib.asynccontextmanager
async def lifespan(settings: Settings) -> AsyncIterator[Resources]:
    async def create_pool() -> asyncpg.Pool:
        pool = await asyncpg.create_pool(
            settings.db.dsn(),
            min_size=settings.db.pool_min_size,
            max_size=settings.db.pool_max_size,
            server_settings={"application_name": "windpark-concentrator"},
        )
        assert pool is not None
        return pool

    pool = await _retry_forever("connecting to PostgreSQL", create_pool, settings)
    try:
        connection = await _connect_broker(settings)
        try:
            yield Resources(pool=pool, connection=connection)
        finally:
            await connection.close()
    finally:
        await pool.close()


async def _connect_broker(settings: Settings) -> AbstractRobustConnection:
    delay = 0.5
    while True:
        try:
            return await connect_robust(settings.broker)
        except (OSError, AMQPError) as exc:
            log.warning("broker not reachable (%r); retrying in %.1f s", exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)


class Concentrator:
    def __init__(self, settings: Settings, resources: Resources) -> None:
        self.settings = settings
        self.pool = resources.pool
        self.connection = resources.connection
        self.turbines: dict[str, TurbineInfo] = {}
        self.tracks: dict[str, TurbineTrack] = {}
        self._registry_read_at = 0.0
        self.rollup_engine: rollups.Engine = "windpark"
        self._inbox: asyncio.Queue[AbstractIncomingMessage] = asyncio.Queue()
        self._consumer_tag: str | None = None
        self._queue: aio_pika.abc.AbstractRobustQueue | None = None

    async def start(self) -> None:
        async def ask_engine() -> rollups.Engine:
            async with self.pool.acquire() as conn:
                return await rollups.engine(conn)

        self.rollup_engine = await _retry_forever(
            "asking the rollup engine", ask_engine, self.settings
        )
        await self._refresh_registry(force=True)
        await self._load_tracks(list(self.turbines))
        channel = await self.connection.channel()
        await channel.set_qos(prefetch_count=self.settings.prefetch)
        # Passive: declaring belongs to `windpark setup` (the admin), which binds the queue
        # before any turbine may log in; this identity may only consume.
        queue = await topology.existing_queue(channel)
        self._queue = queue  # type: ignore[assignment]
        # Robust queues re-register this consumer on the new channel after a reconnect.
        self._consumer_tag = await queue.consume(self._inbox.put, no_ack=False)
        log.info(
            "consuming %s (prefetch %d, batches of %d / %.2f s), %d turbines registered",
            contract.QUEUE,
            self.settings.prefetch,
            self.settings.batch_size,
            self.settings.batch_max_wait_s,
            len(self.turbines),
        )

    async def stop(self) -> None:
        if self._queue is not None and self._consumer_tag is not None:
            with contextlib.suppress(AMQPError, ChannelInvalidStateError, RuntimeError):
                await self._queue.cancel(self._consumer_tag)

    async def run_batches(self, stop: asyncio.Event) -> None:
        """Gather micro-batches (by size and by time) and process them until ``stop``."""
        loop = asyncio.get_running_loop()
        while not stop.is_set():
            first = await self._next_message(stop, wait_s=0.5)
            if first is None:
                continue
            batch = [first]
            deadline = loop.time() + self.settings.batch_max_wait_s
            while len(batch) < self.settings.batch_size:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                message = await self._next_message(stop, wait_s=remaining)
                if message is None:
                    break
                batch.append(message)
            # Whatever was gathered is finished even when a stop arrives meanwhile.
            await self.process(batch)

    async def _next_message(
        self, stop: asyncio.Event, wait_s: float
    ) -> AbstractIncomingMessage | None:
        if not self._inbox.empty():
            return self._inbox.get_nowait()
        if stop.is_set():
            return None
        try:
            return await asyncio.wait_for(self._inbox.get(), timeout=wait_s)
        except TimeoutError:
            return None

    async def process(self, messages: Sequence[AbstractIncomingMessage]) -> BatchResult | None:
        # Messages delivered on a channel that has since closed will be redelivered on
        # the new one; processing them now would only produce acks that cannot land.
        live = [m for m in messages if not _channel_closed(m)]
        if len(live) < len(messages):
            log.info(
                "dropped %d messages from a closed channel (redelivered)", len(messages) - len(live)
            )
        if not live:
            return None
        started = time.perf_counter()
        received_at = datetime.now(UTC)
        inbound = [_inbound(m, received_at) for m in live]
        await self._prepare_context(inbound)
        judged = judge_batch(inbound, now=received_at, turbines=self.turbines, tracks=self.tracks)
        result = await _retry_forever("writing a batch", lambda: self._write(judged), self.settings)
        self.tracks = judged.tracks  # adopted only now that the batch is committed
        await _ack(live)
        metrics.observe_batch(judged, result, time.perf_counter() - started)
        return result

    async def _write(self, judged: JudgedBatch) -> BatchResult:
        try:
            return await self._store(judged)
        except TRANSIENT_DB_ERRORS:
            raise
        except asyncpg.PostgresError:
            # A row the database refuses (a constraint we did not foresee) must not block
            # the queue nor be lost: store the batch message by message and keep the
            # refused ones as rejects with their raw bytes.
            log.exception("batch refused by the database; storing one by one")
            return await self._write_one_by_one(judged)

    async def _store(self, judged: JudgedBatch) -> BatchResult:
        return await store(self.pool, judged, self.rollup_engine)

    async def _write_one_by_one(self, judged: JudgedBatch) -> BatchResult:
        total = BatchResult()
        for item in judged.accepted:
            single = JudgedBatch(accepted=[item])
            try:
                part = await self._store(single)
            except TRANSIENT_DB_ERRORS:
                raise
            except asyncpg.PostgresError as exc:
                part = await self._store(
                    JudgedBatch(
                        rejected=[
                            RejectedMessage(
                                payload=item.payload or contract.encode(item.reading),
                                reasons=[
                                    ("storage_error", f"database refused the row: {exc}", None)
                                ],
                                source=item.source,
                                received_at=item.received_at,
                                dedup_key=item.dedup_key,
                                turbine_id=item.reading.turbine_id,
                                seq=item.reading.seq,
                            )
                        ]
                    ),
                )
            total.stored += part.stored
            total.duplicates += part.duplicates
            total.conflicts += part.conflicts
            total.rejected += part.rejected
            total.refresh_failed |= part.refresh_failed
        if judged.rejected:
            part = await self._store(JudgedBatch(rejected=judged.rejected))
            total.rejected += part.rejected
        return total

    async def _prepare_context(self, inbound: Sequence[Inbound]) -> None:
        claimed = {claimed_turbine_id(m) for m in inbound}
        if any(t not in self.turbines for t in claimed):
            await self._refresh_registry()
        missing_tracks = [t for t in claimed if t and t in self.turbines and t not in self.tracks]
        if missing_tracks:
            await self._load_tracks(missing_tracks)

    async def _refresh_registry(self, *, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._registry_read_at < self.settings.registry_refresh_min_s:
            return
        self._registry_read_at = now

        async def read() -> dict[str, registry.RegisteredTurbine]:
            async with self.pool.acquire() as conn:
                return await registry.load_registry(conn)

        registered = await _retry_forever("reading the registry", read, self.settings)
        self.turbines = {
            t.turbine_id: TurbineInfo(t.turbine_id, t.model) for t in registered.values()
        }

    async def _load_tracks(self, turbine_ids: Sequence[str]) -> None:
        """Rebuild the soft checks' per-turbine state from the last stored readings."""
        if not turbine_ids:
            return

        async def read() -> list[asyncpg.Record]:
            async with self.pool.acquire() as conn:
                return await conn.fetch(
                    """
                    SELECT r.*
                    FROM unnest($1::text[]) AS t(turbine_id)
                    CROSS JOIN LATERAL (
                        SELECT * FROM readings
                        WHERE readings.turbine_id = t.turbine_id
                        ORDER BY ts DESC LIMIT $2
                    ) AS r
                    """,
                    list(turbine_ids),
                    TRACK_HISTORY_READINGS,
                )

        rows = await _retry_forever("reading recent readings", read, self.settings)
        by_turbine: dict[str, list[contract.Reading]] = {}
        for row in rows:
            by_turbine.setdefault(row["turbine_id"], []).append(_reading_from_row(row))
        for turbine_id, readings in by_turbine.items():
            info = self.turbines.get(turbine_id)
            track = track_from_history(
                sorted(readings, key=lambda r: r.ts), model=info.model if info else None
            )
            if track is not None:
                self.tracks[turbine_id] = track


def _reading_from_row(row: asyncpg.Record) -> contract.Reading:
    data = {k: row[k] for k in contract.Reading.model_fields if k in row.keys() and k != "v"}  # noqa: SIM118
    return contract.Reading.model_validate({**data, "v": 1}, strict=False)


def _channel_closed(message: AbstractIncomingMessage) -> bool:
    channel = message.channel
    return bool(getattr(channel, "is_closed", False))


def _inbound(message: AbstractIncomingMessage, received_at: datetime) -> Inbound:
    headers = message.headers or {}
    return Inbound(
        body=message.body,
        routing_key=message.routing_key or "",
        message_id=message.message_id,
        received_at=received_at,
        mqtt="x-mqtt-publish-qos" in headers,
    )


async def _ack(messages: Sequence[AbstractIncomingMessage]) -> None:
    # One ack with multiple=True per channel: every earlier delivery on that channel
    # belongs to this batch or to one already acked (batches are processed in order).
    last_per_channel: dict[int, AbstractIncomingMessage] = {}
    for message in messages:
        last_per_channel[id(message.channel)] = message
    for message in last_per_channel.values():
        try:
            await message.ack(multiple=True)
        except (AMQPError, ChannelInvalidStateError, RuntimeError) as exc:
            # Committed but not acked: the broker redelivers, the writes absorb it.
            log.warning("ack failed after commit (%r); the batch will be redelivered", exc)


async def _retention_loop(settings: Settings, pool: asyncpg.Pool, stop: asyncio.Event) -> None:
    """Drop raw data past the retention period, now and then every retention_every_s.

    Idempotent, so several concentrators doing it is harmless.
    """
    while not stop.is_set():
        try:
            async with pool.acquire() as conn:
                await retention.enforce(conn, settings.retention_days)
        except RETENTION_ERRORS:
            log.exception("retention run failed; next try in %.0f s", settings.retention_every_s)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=settings.retention_every_s)


async def run(settings: Settings) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    metrics.serve(settings.metrics_host, settings.metrics_port)
    async with lifespan(settings) as resources:
        concentrator = Concentrator(settings, resources)
        await concentrator.start()
        housekeeping = asyncio.create_task(_retention_loop(settings, resources.pool, stop))
        try:
            await concentrator.run_batches(stop)
        finally:
            await concentrator.stop()
            housekeeping.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await housekeeping
    log.info("concentrator stopped")
    return 0
