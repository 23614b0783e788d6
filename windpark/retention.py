"""Retention: raw readings for a configurable period (default 90 days), rollups for years.

On the Apache edition windpark drops old chunks itself (``drop_chunks``), from a
periodic task of the concentrator and from ``windpark retention``. On the community
license a TimescaleDB retention policy does it daily as well (migration 0003);
``enforce`` there also makes the policy's interval match the setting, and drops the
chunks due at once with the same statement, so ``windpark retention`` does the same
on both. Rejects, duplicate records and conflicts follow the same period; rollups are never
touched (their chunks are months wide and they are the long-term history).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import Final

from windpark import rollups
from windpark.db import Connection

log = logging.getLogger("windpark.retention")
DELETE_BATCH_ROWS = 50_000


@dataclass(frozen=True, slots=True)
class RetentionResult:
    dropped_chunks: int
    deleted_rejects: int
    deleted_duplicates: int
    deleted_conflicts: int


async def enforce(conn: Connection, raw_days: int) -> RetentionResult:
    if raw_days < 8:
        # Readings up to 7 days old are still accepted (late data); never drop those.
        raise ValueError("raw readings must be kept at least 8 days")
    keep = timedelta(days=raw_days)
    if await rollups.engine(conn) == "timescaledb":
        keep = await _past_refresh_windows(conn, keep)
        # The policy keeps doing it daily; the chunks due are dropped now all the same,
        # by the statement the Apache branch runs, so both answer the same.
        await _align_policy(conn, keep)
    dropped = len(await conn.fetch(DROP_CHUNKS_SQL, keep))
    rejects = await _delete_older(conn, "rejected_readings", keep)
    duplicates = await _delete_older(conn, "duplicate_readings", keep)
    # A conflict is raw data too (a second reading of a stored key): same period.
    conflicts = await _delete_older(conn, "conflicting_readings", keep)
    if dropped or rejects or duplicates or conflicts:
        log.info(
            "retention %s: dropped %d chunks, %d rejects, %d duplicate records, %d conflicts",
            keep,
            dropped,
            rejects,
            duplicates,
            conflicts,
        )
    return RetentionResult(dropped, rejects, duplicates, conflicts)


DROP_CHUNKS_SQL: Final = "SELECT drop_chunks('readings', older_than => now() - $1::interval)"
# Community license only: the retention policy of migration 0003.
POLICY_INTERVAL_SQL: Final = """
    SELECT (config->>'drop_after')::interval FROM timescaledb_information.jobs
    WHERE proc_name = 'policy_retention' AND hypertable_name = 'readings'
"""
# The oldest instant any refresh policy of the continuous aggregates recomputes.
REFRESH_REACH_SQL: Final = """
    SELECT max((config->>'start_offset')::interval) FROM timescaledb_information.jobs
    WHERE proc_name = 'policy_refresh_continuous_aggregate'
"""
REMOVE_POLICY_SQL: Final = "SELECT remove_retention_policy('readings', if_exists => true)"
ADD_POLICY_SQL: Final = "SELECT add_retention_policy('readings', $1::interval)"
COMMUNITY_STATEMENTS: Final = (
    POLICY_INTERVAL_SQL,
    REFRESH_REACH_SQL,
    REMOVE_POLICY_SQL,
    ADD_POLICY_SQL,
)


async def _past_refresh_windows(conn: Connection, keep: timedelta) -> timedelta:
    """``keep``, or longer if a refresh policy reaches further back: drop_chunks marks
    the dropped range as changed in the continuous aggregates, so a refresh over it
    would recompute its buckets from no rows and delete the rollups (the long-term
    history). Migration 0002's policies reach 10 days back."""
    reach = await conn.fetchval(REFRESH_REACH_SQL)
    if reach is not None and keep < reach:
        log.warning(
            "retention %s raised to %s: the continuous aggregates' refresh policies"
            " recompute that far back, and would erase the rollups of dropped days",
            keep,
            reach,
        )
        return reach  # type: ignore[no-any-return]
    return keep


async def _align_policy(conn: Connection, keep: timedelta) -> None:
    current = await conn.fetchval(POLICY_INTERVAL_SQL)
    if current != keep:
        async with conn.transaction():
            await conn.execute(REMOVE_POLICY_SQL)
            await conn.execute(ADD_POLICY_SQL, keep)


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
