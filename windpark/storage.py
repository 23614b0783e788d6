"""Writes judged readings to TimescaleDB: the ingest transaction.

One call to ``write_batch`` is one transaction: valid readings (idempotent on
turbine and time) with their holds (the time each stands for: energy), the holds
of the stored neighbours they change, the rollups and the latest values for the rows
actually inserted, the duplicates that were absorbed, the conflicts with their raw
bytes and values, the rejects with their raw bytes, and last the park rollups of the
buckets touched. The caller acknowledges the messages only after it returns.

A reading whose (turbine, ts) is already stored is a *duplicate* when its values equal
the stored row's (or a kept conflict's): a redelivery, or the same reading sent again.
Otherwise it is a *conflict*: two different readings with the same key are a
conflict, not a duplicate, and the second is kept with its bytes in
``conflicting_readings``, once per message (``dedup_key``).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final, Literal

import orjson

from windpark import contract, rollups
from windpark.contract import Reading
from windpark.db import Connection

log = logging.getLogger(__name__)

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
    conflicts: int = 0
    rejected: int = 0
    inserted_keys: set[tuple[str, datetime]] = field(default_factory=set)
    # Community license: the refresh after the commit failed (the readings are stored).
    refresh_failed: bool = False


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


def reading_row(item: AcceptedReading) -> tuple[object, ...]:
    """The reading's row in ``READING_COLUMNS`` order (the ingest insert, COPY)."""
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
    # The instants whose buckets changed: inserted readings, and neighbours whose hold moved.
    touched_ts: set[datetime] = set()
    async with conn.transaction():
        if accepted:
            if rollup_engine is None:
                rollup_engine = await rollups.engine(conn)
            columns = list(zip(*(reading_row(a) for a in accepted), strict=True))
            await rollups.lock_turbines(conn, (a.reading.turbine_id for a in accepted))
            rows = await conn.fetch(INSERT_READINGS_SQL[rollup_engine], *[list(c) for c in columns])
            # Inserted readings, and stored neighbours whose hold (energy) they changed.
            result.inserted_keys = {(r["turbine_id"], r["ts"]) for r in rows if r["inserted"]}
            moved_ts = {row["ts"] for row in rows if not row["inserted"]}
            touched_ts = moved_ts | {ts for _, ts in result.inserted_keys}
            result.stored = len(result.inserted_keys)
            await _file_not_inserted(conn, accepted, result)
        if rejected:
            await conn.executemany(INSERT_REJECTS_SQL, [_reject_row(r) for r in rejected])
            result.rejected = len(rejected)
        if result.inserted_keys and rollup_engine == "windpark":
            # Last before the commit: it holds the park buckets' locks until then.
            await rollups.refresh_park(conn, list(touched_ts))
    if touched_ts and rollup_engine == "timescaledb":  # after the commit
        result.refresh_failed = not await _refresh_after_commit(conn, list(touched_ts))
    return result


async def _refresh_after_commit(conn: Connection, touched_ts: list[datetime]) -> bool:
    """Refresh the materialized buckets the committed batch touched; False if it failed.

    It never raises: the readings are committed, and an exception here would make the
    caller write the batch again (every reading then a duplicate) with the refresh still
    undone. The buckets stay stale until their refresh policy reaches them."""
    try:
        await rollups.refresh_stale(conn, touched_ts)
    except Exception:  # any failure: the data is committed either way
        log.exception(
            "refreshing the continuous aggregates after a committed batch failed;"
            " its buckets stay stale until the refresh policies run"
        )
        return False
    return True


# The fields that make two readings of one key "the same reading". Not the quality
# flags, source or arrival: a redelivery judged against another history may be flagged
# differently, and it is still the same reading.
VALUE_COLUMNS: Final = tuple(
    c
    for c in READING_COLUMNS
    if c not in ("ts", "turbine_id", "quality_flags", "source", "received_at")
)
_VALUE_INDEX: Final = tuple(READING_COLUMNS.index(c) for c in VALUE_COLUMNS)
_value_list = ", ".join(VALUE_COLUMNS)

Key = tuple[str, datetime]
Values = tuple[object, ...]

# The values already kept for some keys: the stored row, and the conflicts kept so far.
# In the ingest transaction, so it sees the rows this batch inserted, and at READ
# COMMITTED a row a concurrent batch inserted first (ON CONFLICT waited for its commit).
# $3, $4: the keys' first and last ts, so only the chunks that can hold them are read.
KEPT_VALUES_SQL: Final = f"""
WITH keys AS (SELECT * FROM unnest($1::text[], $2::timestamptz[]) AS k(turbine_id, ts))
SELECT true AS stored, turbine_id, ts, {_value_list}
FROM readings JOIN keys USING (turbine_id, ts)
WHERE readings.ts BETWEEN $3 AND $4
UNION ALL
SELECT false, turbine_id, ts, {_value_list}
FROM conflicting_readings JOIN keys USING (turbine_id, ts)
"""

_conflict_input = ", ".join(
    f"${i}::{_column_type(c)}[]" for i, c in enumerate(READING_COLUMNS, start=2)
)
_n_conflict_params = len(READING_COLUMNS) + 1
INSERT_CONFLICTS_SQL: Final = f"""
INSERT INTO conflicting_readings (dedup_key, {_columns}, payload, differs)
SELECT dedup_key, {_columns}, payload, string_to_array(differs, ',')
FROM unnest($1::text[], {_conflict_input}, ${_n_conflict_params + 1}::bytea[],
            ${_n_conflict_params + 2}::text[])
    AS t(dedup_key, {_columns}, payload, differs)
ON CONFLICT (dedup_key) DO NOTHING
RETURNING dedup_key
"""


class UnfiledReadingError(RuntimeError):
    """An accepted reading the insert neither stored nor found stored or kept: it would
    otherwise be lost, or misfiled as a conflict with every field differing."""

    def __init__(self, key: Key) -> None:
        super().__init__(
            f"reading of {key[0]} at {key[1].isoformat()} was not inserted,"
            " and no row or conflict is kept under its key"
        )
        self.key = key


@dataclass(slots=True)
class _Filing:
    duplicates: list[AcceptedReading] = field(default_factory=list)
    conflicts: list[tuple[AcceptedReading, list[str]]] = field(default_factory=list)


def _values(item: AcceptedReading) -> Values:
    row = reading_row(item)
    return tuple(row[i] for i in _VALUE_INDEX)


def classify_not_inserted(
    accepted: Sequence[AcceptedReading],
    inserted: set[Key],
    stored: dict[Key, Values],
    conflicts_kept: dict[Key, list[Values]],
) -> _Filing:
    """Which accepted readings that did not become a row are duplicates, which conflicts.

    ``accepted``: the readings of the keys to file, in batch order; ``stored``: the values
    of the row of each of those keys (an inserted key's own reading is found by them);
    ``conflicts_kept``: the values of the conflicts kept before this batch. A reading
    equal to either, or to an earlier one of this batch, is a duplicate; any other is a
    conflict, with the fields where it differs from the stored row. A key with no stored
    row, no kept conflict and no insert is an error (``UnfiledReadingError``).
    """
    filing = _Filing()
    known: dict[Key, list[Values]] = {}
    unclaimed = set(inserted)  # keys whose inserted reading is still to be found
    for item in accepted:
        key = (item.reading.turbine_id, item.reading.ts)
        values = _values(item)
        if key in unclaimed and stored.get(key) == values:
            unclaimed.discard(key)  # this one became the row
            continue
        if key not in stored and key not in conflicts_kept and key not in inserted:
            # Nothing kept under this key, yet the insert did not take it: the insert
            # left the row out (a bug), and filing it as a conflict would hide the loss.
            raise UnfiledReadingError(key)
        seen = known.setdefault(
            key, [*([stored[key]] if key in stored else []), *conflicts_kept.get(key, [])]
        )
        if values in seen:
            filing.duplicates.append(item)
            continue
        seen.append(values)
        filing.conflicts.append((item, _differs(values, stored.get(key))))
    return filing


def _differs(values: Values, stored: Values | None) -> list[str]:
    if stored is None:  # the stored row is gone (retention): every field is unconfirmed
        return list(VALUE_COLUMNS)
    return [
        c for c, mine, theirs in zip(VALUE_COLUMNS, values, stored, strict=True) if mine != theirs
    ]


async def _file_not_inserted(
    conn: Connection, accepted: Sequence[AcceptedReading], result: BatchResult
) -> None:
    """File every accepted reading that did not become a row, as a duplicate or a conflict.

    Only the keys with such a reading are read back, so a batch of new readings (the
    usual case) costs nothing more than the insert.
    """
    counts: dict[Key, int] = {}
    for a in accepted:
        key = (a.reading.turbine_id, a.reading.ts)
        counts[key] = counts.get(key, 0) + 1
    keys = [k for k, n in counts.items() if n > (1 if k in result.inserted_keys else 0)]
    if not keys:
        return
    wanted = set(keys)
    candidates = [a for a in accepted if (a.reading.turbine_id, a.reading.ts) in wanted]
    stored: dict[Key, Values] = {}
    conflicts_kept: dict[Key, list[Values]] = {}
    times = [k[1] for k in keys]
    rows = await conn.fetch(KEPT_VALUES_SQL, [k[0] for k in keys], times, min(times), max(times))
    for row in rows:
        key = (row["turbine_id"], row["ts"])
        values = tuple(row[c] for c in VALUE_COLUMNS)
        if row["stored"]:
            stored[key] = values
        else:
            conflicts_kept.setdefault(key, []).append(values)
    filing = classify_not_inserted(candidates, result.inserted_keys, stored, conflicts_kept)
    duplicates = filing.duplicates
    if filing.conflicts:
        kept = await _insert_conflicts(conn, filing.conflicts)
        result.conflicts = len(kept)
        # A conflicting message delivered again (its key already kept) is a redelivery.
        duplicates += [item for item, _ in filing.conflicts if item.dedup_key not in kept]
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


async def _insert_conflicts(
    conn: Connection, conflicts: Sequence[tuple[AcceptedReading, list[str]]]
) -> set[str]:
    columns = list(zip(*(reading_row(item) for item, _ in conflicts), strict=True))
    rows = await conn.fetch(
        INSERT_CONFLICTS_SQL,
        [item.dedup_key for item, _ in conflicts],
        *[list(c) for c in columns],
        # Readings made in process (tests, tools) have no wire bytes: their encoding is kept.
        [item.payload or contract.encode(item.reading) for item, _ in conflicts],
        # text[][] would need equal lengths: the list travels as one comma-joined string.
        [",".join(differs) for _, differs in conflicts],
    )
    return {row["dedup_key"] for row in rows}


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
