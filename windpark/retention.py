"""Retention: raw readings for a configurable period (default 90 days), rollups for years.

On the Apache edition windpark drops old chunks itself (``drop_chunks``), from a
periodic task of the concentrator and from ``windpark retention``. On the community
license a TimescaleDB retention policy does it (migration 0003); ``enforce`` then
only makes the policy's interval match the setting. Rejects and duplicate records
follow the same period; rollups are never touched (their chunks are months wide and
they are the long-term history).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta

from windpark import rollups
from windpark.db import Connection

log = logging.getLogger("windpark.retention")
DELETE_BATCH_ROWS = 50_000


@dataclass(frozen=True, slots=True)
class RetentionResult:
    dropped_chunks: int
    deleted_rejects: int
    deleted_duplicates: int


async def enforce(conn: Connection, raw_days: int) -> RetentionResult:
    if raw_days < 8:
        # Readings up to 7 days old are still accepted (late data); never drop those.
        raise ValueError("raw readings must be kept at least 8 days")
    keep = timedelta(days=raw_days)
    if await rollups.engine(conn) == "timescaledb":
        await _align_policy(conn, keep)
        dropped = 0
    else:
        chunks = await conn.fetch(
            "SELECT drop_chunks('readings', older_than => now() - $1::interval)", keep
        )
        dropped = len(chunks)
    rejects = await _delete_older(conn, "rejected_readings", keep)
    duplicates = await _delete_older(conn, "duplicate_readings", keep)
    if dropped or rejects or duplicates:
        log.info(
            "retention %d days: dropped %d chunks, %d rejects, %d duplicate records",
            raw_days,
            dropped,
            rejects,
            duplicates,
        )
    return RetentionResult(dropped, rejects, duplicates)


async def _align_policy(conn: Connection, keep: timedelta) -> None:
    current = await conn.fetchval(
        """
        SELECT (config->>'drop_after')::interval FROM timescaledb_information.jobs
        WHERE proc_name = 'policy_retention' AND hypertable_name = 'readings'
        """
    )
    if current != keep:
        async with conn.transaction():
            await conn.execute("SELECT remove_retention_policy('readings', if_exists => true)")
            await conn.execute("SELECT add_retention_policy('readings', $1::interval)", keep)


async def _delete_older(conn: Connection, table: str, keep: timedelta) -> int:
    """Delete in batches, so a first run on a large backlog does not hold one huge lock."""
    total = 0
    while True:
        status = await conn.execute(
            f"""
            DELETE FROM {table} WHERE ctid IN (
                SELECT ctid FROM {table} WHERE received_at < now() - $1::interval LIMIT $2
            )
            """,
            keep,
            DELETE_BATCH_ROWS,
        )
        deleted = int(status.split()[-1])
        total += deleted
        if deleted < DELETE_BATCH_ROWS:
            return total
