"""Data quality: what was received, accepted, flagged, rejected and absorbed, per turbine.

Stored readings are counted from the rollups (``n``); flags are counted per bit from
the raw readings of the window, rejects per reason from ``rejected_readings`` (by
arrival time) and duplicates from ``duplicate_readings``. Completeness is stored
readings over the readings expected at the park's sampling interval.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Final

import asyncpg
import orjson

from services.aggregator import schemas
from windpark.db import Connection
from windpark.validation import QualityFlag, ReasonCode

QUALITY_BUCKETS: Final = {"1h": timedelta(hours=1), "1d": timedelta(days=1)}
# Flag name -> bit, for the per-kind counts (names as in docs/reason-codes.md, lower case).
FLAGS: Final = {str(flag.name).lower(): int(flag) for flag in QualityFlag}
_FLAG_COUNTS: Final = ", ".join(
    f"count(*) FILTER (WHERE quality_flags & {bit} <> 0) AS flag_{name}"
    for name, bit in FLAGS.items()
)
_FLAG_COLUMNS: Final = ", ".join(f"coalesce(f.flag_{name}, 0) AS flag_{name}" for name in FLAGS)

QUALITY_SQL: Final = f"""
WITH buckets AS (
    SELECT bucket, turbine_id, n AS stored
    FROM __ROLLUP__
    WHERE bucket >= $1 AND bucket < $2 AND ($3::text IS NULL OR turbine_id = $3)
), flags AS (
    SELECT time_bucket($4::interval, ts) AS bucket, turbine_id,
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
), duplicates AS (
    SELECT time_bucket($4::interval, ts) AS bucket, turbine_id, count(*) AS n
    FROM duplicate_readings
    WHERE ts >= $1 AND ts < $2 AND ($3::text IS NULL OR turbine_id = $3)
    GROUP BY 1, 2
), keys AS (
    SELECT bucket, turbine_id FROM buckets
    UNION SELECT bucket, turbine_id FROM rejected_messages WHERE turbine_id IS NOT NULL
    UNION SELECT bucket, turbine_id FROM duplicates
)
SELECT k.bucket, k.turbine_id,
       coalesce(b.stored, 0) AS stored,
       coalesce(f.flagged, 0) AS flagged,
       {_FLAG_COLUMNS},
       coalesce(m.n, 0) AS rejected,
       coalesce((SELECT jsonb_object_agg(r.reason, r.n) FROM rejects r
                 WHERE r.bucket = k.bucket AND r.turbine_id = k.turbine_id), '{{}}') AS reasons,
       coalesce(d.n, 0) AS duplicates
FROM keys k
LEFT JOIN buckets b USING (bucket, turbine_id)
LEFT JOIN flags f USING (bucket, turbine_id)
LEFT JOIN rejected_messages m USING (bucket, turbine_id)
LEFT JOIN duplicates d USING (bucket, turbine_id)
ORDER BY k.bucket, k.turbine_id
"""


async def fetch_quality(
    conn: Connection,
    *,
    start: datetime,
    end: datetime,
    bucket: str,
    turbine_id: str | None,
    expected_interval_s: float,
) -> list[schemas.QualityBucket]:
    width = QUALITY_BUCKETS[bucket]
    rows = await conn.fetch(
        QUALITY_SQL.replace("__ROLLUP__", f"rollup_{bucket}"), start, end, turbine_id, width
    )
    expected = width.total_seconds() / expected_interval_s
    out = []
    for row in rows:
        reasons = row["reasons"]
        by_reason = orjson.loads(reasons) if isinstance(reasons, str) else dict(reasons)
        stored = int(row["stored"])
        out.append(
            schemas.QualityBucket(
                bucket_start=row["bucket"],
                turbine_id=row["turbine_id"],
                received=stored + int(row["rejected"]) + int(row["duplicates"]),
                stored=stored,
                clean=stored - int(row["flagged"]),
                flagged=int(row["flagged"]),
                flagged_by_kind={name: int(row[f"flag_{name}"]) for name in FLAGS},
                rejected=int(row["rejected"]),
                rejected_by_reason={str(k): int(v) for k, v in by_reason.items()},
                duplicates=int(row["duplicates"]),
                expected=expected,
                completeness=min(stored / expected, 1.0) if expected else 1.0,
            )
        )
    return out


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
            payload_base64=base64.b64encode(r["payload"]).decode(),
            payload_text=bytes(r["payload"]).decode("utf-8", errors="replace"),
        )
        for r in rows[:limit]
    ]
    next_cursor = str(items[-1].id) if len(rows) > limit else None
    return schemas.RejectPage(rejects=items, next_cursor=next_cursor)
