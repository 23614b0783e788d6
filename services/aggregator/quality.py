"""Data quality: what was received, accepted, flagged, rejected, absorbed and kept as a
conflict, per turbine.

Every count is of the raw rows inside the window ``[start, end)``, grouped by the bucket
they fall in: stored and flagged readings from ``readings`` (by device time), rejects
per reason from ``rejected_readings`` (by arrival time), duplicates and conflicts from
``duplicate_readings`` and ``conflicting_readings`` (by device time). A bucket the window
cuts counts only its part inside the window, so the same rows give the same counts
whatever the window. Stored readings are counted in the same scan of ``readings`` as
the flags, not from the rollups: a rollup row holds a whole bucket, which a window that
cuts the bucket cannot use (reading it gave ``stored: 0`` beside ``flagged: 129`` for a
``from`` 27 s past the hour), and the scan is there for the flags anyway (a day of ten
turbines at 1 Hz: ~0.4 s either way). Completeness is stored readings over the readings
expected at the park's sampling interval during the part of the bucket inside the
window that has already elapsed.

Rejects whose turbine id is missing, unreadable or not registered have no turbine to
belong to: they are listed apart (``unattributed``) and counted in the totals.
"""

from __future__ import annotations

import base64
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, Final

import asyncpg
import orjson

from services.aggregator import schemas
from windpark.db import Connection
from windpark.storage import VALUE_COLUMNS
from windpark.validation import QualityFlag, ReasonCode

QUALITY_BUCKETS: Final = {"1h": timedelta(hours=1), "1d": timedelta(days=1)}
# Flag name -> bit, for the per-kind counts (names as in docs/reason-codes.md, lower case).
FLAGS: Final = {str(flag.name).lower(): int(flag) for flag in QualityFlag}
_FLAG_COUNTS: Final = ", ".join(
    f"count(*) FILTER (WHERE quality_flags & {bit} <> 0) AS flag_{name}"
    for name, bit in FLAGS.items()
)
_FLAG_COLUMNS: Final = ", ".join(f"coalesce(s.flag_{name}, 0) AS flag_{name}" for name in FLAGS)


def _by_ts(table: str) -> str:
    return f"""
    SELECT time_bucket($4::interval, ts) AS bucket, turbine_id, count(*) AS n
    FROM {table}
    WHERE ts >= $1 AND ts < $2 AND ($3::text IS NULL OR turbine_id = $3)
    GROUP BY 1, 2"""


# $1, $2: the window [start, end); $3: one turbine id or null; $4: the bucket width.
# Rejects may have no turbine id: their joins compare with IS NOT DISTINCT FROM.
QUALITY_SQL: Final = f"""
WITH stored AS (
    SELECT time_bucket($4::interval, ts) AS bucket, turbine_id, count(*) AS stored,
           count(*) FILTER (WHERE quality_flags <> 0) AS flagged, {_FLAG_COUNTS}
    FROM readings
    WHERE ts >= $1 AND ts < $2 AND ($3::text IS NULL OR turbine_id = $3)
    GROUP BY 1, 2
), rejects AS (
    SELECT time_bucket($4::interval, received_at) AS bucket, turbine_id, reason,
           count(*) AS n
    FROM rejected_readings, unnest(reasons) AS reason
    WHERE received_at >= $1 AND received_at < $2 AND ($3::text IS NULL OR turbine_id = $3)
    GROUP BY 1, 2, 3
), rejected_messages AS (
    SELECT time_bucket($4::interval, received_at) AS bucket, turbine_id, count(*) AS n
    FROM rejected_readings
    WHERE received_at >= $1 AND received_at < $2 AND ($3::text IS NULL OR turbine_id = $3)
    GROUP BY 1, 2
), duplicates AS ({_by_ts("duplicate_readings")}
), conflicts AS ({_by_ts("conflicting_readings")}
), keys AS (
    SELECT bucket, turbine_id FROM stored
    UNION SELECT bucket, turbine_id FROM rejected_messages
    UNION SELECT bucket, turbine_id FROM duplicates
    UNION SELECT bucket, turbine_id FROM conflicts
)
SELECT k.bucket, k.turbine_id,
       EXISTS (SELECT 1 FROM turbines t WHERE t.turbine_id = k.turbine_id) AS registered,
       coalesce(s.stored, 0) AS stored,
       coalesce(s.flagged, 0) AS flagged,
       {_FLAG_COLUMNS},
       coalesce(m.n, 0) AS rejected,
       coalesce((SELECT jsonb_object_agg(r.reason, r.n) FROM rejects r
                 WHERE r.bucket = k.bucket AND r.turbine_id IS NOT DISTINCT FROM k.turbine_id),
                '{{}}') AS reasons,
       coalesce(d.n, 0) AS duplicates,
       coalesce(c.n, 0) AS conflicts
FROM keys k
LEFT JOIN stored s ON s.bucket = k.bucket AND s.turbine_id = k.turbine_id
LEFT JOIN rejected_messages m
       ON m.bucket = k.bucket AND m.turbine_id IS NOT DISTINCT FROM k.turbine_id
LEFT JOIN duplicates d ON d.bucket = k.bucket AND d.turbine_id = k.turbine_id
LEFT JOIN conflicts c ON c.bucket = k.bucket AND c.turbine_id = k.turbine_id
ORDER BY k.bucket, k.turbine_id NULLS FIRST
"""


def elapsed_overlap_s(
    bucket_start: datetime, width: timedelta, start: datetime, end: datetime, now: datetime
) -> float:
    """Seconds of the bucket that are inside [start, end) and not after ``now``."""
    covered = min(bucket_start + width, end, now) - max(bucket_start, start)
    return max(covered.total_seconds(), 0.0)


def _reasons(value: Any) -> dict[str, int]:
    by_reason = orjson.loads(value) if isinstance(value, str) else dict(value)
    return {str(k): int(v) for k, v in by_reason.items()}


def _counts(row: asyncpg.Record) -> dict[str, Any]:
    stored, flagged = int(row["stored"]), int(row["flagged"])
    rejected, duplicates, conflicts = (
        int(row["rejected"]),
        int(row["duplicates"]),
        int(row["conflicts"]),
    )
    return {
        "received": stored + rejected + duplicates + conflicts,
        "stored": stored,
        "clean": stored - flagged,
        "flagged": flagged,
        "flagged_by_kind": {name: int(row[f"flag_{name}"]) for name in FLAGS},
        "rejected": rejected,
        "rejected_by_reason": _reasons(row["reasons"]),
        "duplicates": duplicates,
        "conflicts": conflicts,
    }


def _totals(parts: Iterable[Mapping[str, Any]]) -> schemas.QualityTotals:
    sums: Counter[str] = Counter()
    kinds: Counter[str] = Counter(dict.fromkeys(FLAGS, 0))
    reasons: Counter[str] = Counter()
    for part in parts:
        for name, value in part.items():
            if name == "flagged_by_kind":
                kinds.update(value)
            elif name == "rejected_by_reason":
                reasons.update(value)
            else:
                sums[name] += value
    return schemas.QualityTotals(
        received=sums["received"],
        stored=sums["stored"],
        clean=sums["clean"],
        flagged=sums["flagged"],
        flagged_by_kind=dict(kinds),
        rejected=sums["rejected"],
        rejected_by_reason=dict(reasons),
        duplicates=sums["duplicates"],
        conflicts=sums["conflicts"],
    )


async def fetch_quality(
    conn: Connection,
    *,
    start: datetime,
    end: datetime,
    now: datetime,
    bucket: str,
    turbine_id: str | None,
    expected_interval_s: float,
) -> tuple[list[schemas.QualityBucket], list[schemas.UnattributedRejects], schemas.QualityTotals]:
    """The report's buckets, its unattributed rejects and its totals.

    ``now``: the clock of "already elapsed" for the expected readings (the database's).
    """
    width = QUALITY_BUCKETS[bucket]
    rows = await conn.fetch(QUALITY_SQL, start, end, turbine_id, width)
    buckets: list[schemas.QualityBucket] = []
    unattributed: list[schemas.UnattributedRejects] = []
    parts = []
    for row in rows:
        counts = _counts(row)
        parts.append(counts)
        if not row["registered"]:
            # No readings, duplicates or conflicts exist for an unregistered turbine:
            # readings need a registered one, and the other two are readings too.
            unattributed.append(
                schemas.UnattributedRejects(
                    bucket_start=row["bucket"],
                    turbine_id=row["turbine_id"],
                    rejected=counts["rejected"],
                    rejected_by_reason=counts["rejected_by_reason"],
                )
            )
            continue
        expected = elapsed_overlap_s(row["bucket"], width, start, end, now) / expected_interval_s
        stored = counts["stored"]
        buckets.append(
            schemas.QualityBucket(
                bucket_start=row["bucket"],
                turbine_id=row["turbine_id"],
                expected=expected,
                completeness=min(stored / expected, 1.0) if expected else 1.0,
                **counts,
            )
        )
    return buckets, unattributed, _totals(parts)


REJECTS_SQL: Final = """
SELECT id, received_at, source, turbine_id, seq, reasons, details, payload
FROM rejected_readings
WHERE received_at >= $1 AND received_at < $2
  AND ($3::text IS NULL OR turbine_id = $3)
  AND ($4::text IS NULL OR $4 = ANY(reasons))
  AND ($5::text IS NULL OR source = $5)
  AND ($6::bigint IS NULL OR id < $6)
ORDER BY id DESC
LIMIT $7
"""


async def fetch_rejects(
    conn: Connection,
    *,
    start: datetime,
    end: datetime,
    turbine_id: str | None,
    reason: ReasonCode | None,
    source: str | None,
    before_id: int | None,
    limit: int,
) -> schemas.RejectPage:
    rows: Sequence[asyncpg.Record] = await conn.fetch(
        REJECTS_SQL,
        start,
        end,
        turbine_id,
        str(reason) if reason else None,
        source,
        before_id,
        limit + 1,
    )
    items = [
        schemas.Reject(
            id=r["id"],
            received_at=r["received_at"],
            source=r["source"],
            turbine_id=r["turbine_id"],
            seq=r["seq"],
            reasons=list(r["reasons"]),
            details=[
                schemas.RejectReason.model_validate(d)
                for d in (orjson.loads(r["details"]) if isinstance(r["details"], str) else [])
            ],
            **_payload(r["payload"]),
        )
        for r in rows[:limit]
    ]
    next_cursor = str(items[-1].id) if len(rows) > limit else None
    return schemas.RejectPage(rejects=items, next_cursor=next_cursor)


def _payload(payload: bytes) -> dict[str, str]:
    return {
        "payload_base64": base64.b64encode(payload).decode(),
        "payload_text": bytes(payload).decode("utf-8", errors="replace"),
    }


_stored_values = ", ".join(f"r.{c} AS stored_{c}" for c in VALUE_COLUMNS)
CONFLICTS_SQL: Final = f"""
SELECT c.*, r.ts IS NOT NULL AS stored_kept, {_stored_values}
FROM conflicting_readings c
LEFT JOIN readings r USING (turbine_id, ts)
WHERE c.ts >= $1 AND c.ts < $2
  AND ($3::text IS NULL OR c.turbine_id = $3)
  AND ($4::bigint IS NULL OR c.id < $4)
ORDER BY c.id DESC
LIMIT $5
"""


def _conflict_values(row: asyncpg.Record, prefix: str = "") -> schemas.ConflictValues:
    return schemas.ConflictValues.model_validate({c: row[prefix + c] for c in VALUE_COLUMNS})


async def fetch_conflicts(
    conn: Connection,
    *,
    start: datetime,
    end: datetime,
    turbine_id: str | None,
    before_id: int | None,
    limit: int,
) -> schemas.ConflictPage:
    rows: Sequence[asyncpg.Record] = await conn.fetch(
        CONFLICTS_SQL, start, end, turbine_id, before_id, limit + 1
    )
    items = [
        schemas.Conflict(
            id=r["id"],
            turbine_id=r["turbine_id"],
            ts=r["ts"],
            message_id=r["dedup_key"],
            source=r["source"],
            received_at=r["received_at"],
            quality_flags=r["quality_flags"],
            values=_conflict_values(r),
            stored=_conflict_values(r, "stored_") if r["stored_kept"] else None,
            differs=list(r["differs"]),
            **_payload(r["payload"]),
        )
        for r in rows[:limit]
    ]
    next_cursor = str(items[-1].id) if len(rows) > limit else None
    return schemas.ConflictPage(conflicts=items, next_cursor=next_cursor)
