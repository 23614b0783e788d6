"""Writes judged readings to TimescaleDB: the ingest transaction.

One call to ``write_batch`` is one transaction: valid readings (idempotent on
turbine and time) with their holds (the time each stands for: energy), the holds
of the stored neighbours they change, the rollups and the latest values for the
rows actually inserted, the duplicates that were absorbed, the rejects with their raw bytes,
and last the park rollups of the buckets touched. The caller acknowledges the
messages only after it returns.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final, Literal

import orjson

from windpark import rollups
from windpark.contract import Reading
from windpark.db import Connection

Source = Literal["amqp", "mqtt", "http", "backfill"]

READING_COLUMNS: Final = (
    "ts",
    "turbine_id",
    "seq",
    "power_kw",
    "wind_speed_ms",
    "temperature_c",
    "state",
    "rotor_rpm",
    "pitch_deg",
    "nacelle_temperature_c",
    "wind_direction_deg",
    "setpoint_kw",
    "quality_flags",
    "source",
    "received_at",
)
_TYPES: Final = {
    "ts": "timestamptz",
    "turbine_id": "text",
    "seq": "int8",
    "state": "text",
    "quality_flags": "int4",
    "source": "text",
    "received_at": "timestamptz",
}


def _column_type(name: str) -> str:
    return _TYPES.get(name, "float8")


@dataclass(frozen=True, slots=True)
class AcceptedReading:
    reading: Reading
    quality_flags: int
    source: Source
    received_at: datetime
    dedup_key: str  # message identity: a redelivery carries the same key
    # The bytes as received, kept only to file the reading as a reject should the
    # database refuse its row.
    payload: bytes | None = None


@dataclass(frozen=True, slots=True)
class RejectedMessage:
    payload: bytes
    reasons: Sequence[tuple[str, str, str | None]]  # (code, message, field)
    source: Source
    received_at: datetime
    dedup_key: str
    turbine_id: str | None = None
    seq: int | None = None


@dataclass(slots=True)
class BatchResult:
    stored: int = 0
    duplicates: int = 0
    rejected: int = 0
    inserted_keys: set[tuple[str, datetime]] = field(default_factory=set)


def payload_dedup_key(source: str, payload: bytes) -> str:
    """Identity for a message that came without one (HTTP, MQTT without properties)."""
    return f"{source}:sha256:{hashlib.sha256(payload).hexdigest()}"


_select_input = ", ".join(
    f"${i}::{_column_type(c)}[]" for i, c in enumerate(READING_COLUMNS, start=1)
)
_columns = ", ".join(READING_COLUMNS)
_latest_updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in READING_COLUMNS if c != "turbine_id")


def _insert_readings_sql(*, with_rollups: bool) -> str:
    # On the community license TimescaleDB maintains the rollups (continuous aggregates);
    # the holds (energy) are set by this statement on both.
    rollup_ctes = rollups.upsert_ctes("inserted", "moved") if with_rollups else ""
    input_columns = ", ".join(f"i.{c}" for c in READING_COLUMNS)
    return f"""
WITH input AS (
    SELECT * FROM unnest({_select_input}) WITH ORDINALITY AS t({_columns}, ord)
){rollups.holds_ctes("input")}
, inserted AS (
    INSERT INTO readings ({_columns}, held_s)
    SELECT {input_columns}, h.held_s FROM input i JOIN holds h USING (turbine_id, ts)
    ORDER BY i.ord
    ON CONFLICT (turbine_id, ts) DO NOTHING
    RETURNING {_columns}, held_s
){rollups.MOVED_CTE}{rollup_ctes}
, latest AS (
    INSERT INTO latest_readings AS l ({_columns})
    SELECT DISTINCT ON (turbine_id) {_columns} FROM inserted ORDER BY turbine_id, ts DESC
    ON CONFLICT (turbine_id) DO UPDATE SET {_latest_updates} WHERE EXCLUDED.ts > l.ts
)
SELECT turbine_id, ts, true AS inserted FROM inserted
UNION ALL SELECT turbine_id, ts, false FROM moved
"""


INSERT_READINGS_SQL: Final = {
    "windpark": _insert_readings_sql(with_rollups=True),
    "timescaledb": _insert_readings_sql(with_rollups=False),
}

INSERT_DUPLICATES_SQL: Final = """
INSERT INTO duplicate_readings (dedup_key, turbine_id, ts, seq, source, received_at)
SELECT * FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::int8[], $5::text[],
                     $6::timestamptz[])
ON CONFLICT (dedup_key) DO NOTHING
"""

INSERT_REJECTS_SQL: Final = """
INSERT INTO rejected_readings
    (received_at, source, turbine_id, seq, payload, reasons, details, dedup_key)
VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb, $8)
ON CONFLICT (dedup_key) DO NOTHING
"""


def _reading_row(item: AcceptedReading) -> tuple[object, ...]:
    r = item.reading
    return (
        r.ts,
        r.turbine_id,
        r.seq,
        r.power_kw,
        r.wind_speed_ms,
        r.temperature_c,
        str(r.state),
        r.rotor_rpm,
        r.pitch_deg,
        r.nacelle_temperature_c,
        r.wind_direction_deg,
        r.setpoint_kw,
        item.quality_flags,
        item.source,
        item.received_at,
    )


async def write_batch(
    conn: Connection,
    accepted: Sequence[AcceptedReading],
    rejected: Sequence[RejectedMessage],
    *,
    rollup_engine: rollups.Engine | None = None,
) -> BatchResult:
    """Store one batch in one transaction; returns what happened to each part.

    ``rollup_engine`` is ``rollups.engine(conn)``: a long-lived writer asks once and
    passes it; without it, it is asked here when the batch has readings.

    Call it outside any transaction of the caller's, at READ COMMITTED (the default):
    the park step (``rollups.refresh_park``) takes its day locks in one order per
    transaction and regroups from a fresh snapshot, which a surrounding transaction
    holding other batches, or a REPEATABLE READ one, would defeat.
    """
    result = BatchResult()
    moved_ts: set[datetime] = set()
    async with conn.transaction():
        if accepted:
            if rollup_engine is None:
                rollup_engine = await rollups.engine(conn)
            columns = list(zip(*(_reading_row(a) for a in accepted), strict=True))
            await rollups.lock_turbines(conn, (a.reading.turbine_id for a in accepted))
            rows = await conn.fetch(INSERT_READINGS_SQL[rollup_engine], *[list(c) for c in columns])
            # Inserted readings, and stored neighbours whose hold (energy) they changed.
            result.inserted_keys = {(r["turbine_id"], r["ts"]) for r in rows if r["inserted"]}
            moved_ts = {row["ts"] for row in rows if not row["inserted"]}
            result.stored = len(result.inserted_keys)
            duplicates = _duplicates(accepted, result.inserted_keys)
            result.duplicates = len(duplicates)
            if duplicates:
                await conn.execute(
                    INSERT_DUPLICATES_SQL,
                    [d.dedup_key for d in duplicates],
                    [d.reading.turbine_id for d in duplicates],
                    [d.reading.ts for d in duplicates],
                    [d.reading.seq for d in duplicates],
                    [d.source for d in duplicates],
                    [d.received_at for d in duplicates],
                )
        if rejected:
            await conn.executemany(INSERT_REJECTS_SQL, [_reject_row(r) for r in rejected])
            result.rejected = len(rejected)
        if result.inserted_keys and rollup_engine == "windpark":
            # Last before the commit: it holds the park buckets' locks until then.
            touched = moved_ts | {ts for _, ts in result.inserted_keys}
            await rollups.refresh_park(conn, list(touched))
    return result


def _duplicates(
    accepted: Sequence[AcceptedReading], inserted: set[tuple[str, datetime]]
) -> list[AcceptedReading]:
    """Accepted readings that did not become a row: already stored, or twice in this batch."""
    # The first occurrence of an inserted key is the stored row; every other one is a duplicate.
    claimed: set[tuple[str, datetime]] = set()
    out = []
    for a in accepted:
        key = (a.reading.turbine_id, a.reading.ts)
        if key in inserted and key not in claimed:
            claimed.add(key)
            continue
        out.append(a)
    return out


def _reject_row(r: RejectedMessage) -> tuple[object, ...]:
    details = [{"code": code, "message": message, "field": fld} for code, message, fld in r.reasons]
    return (
        r.received_at,
        r.source,
        r.turbine_id,
        r.seq,
        r.payload,
        [code for code, _, _ in r.reasons],
        orjson.dumps(details).decode(),
        r.dedup_key,
    )
