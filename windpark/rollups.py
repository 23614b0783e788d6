"""The rollup hierarchy (1 minute, 10 minutes, 1 hour, 1 day) that windpark maintains.

The tables are created by migration 0002. Each row holds count, sum, sum of
squares, min and max per channel for one turbine and bucket, so that a late
reading adds into its bucket exactly, and a coarser bucket is the sum of finer
ones. Two ways in:

- ``upsert_ctes``: SQL that folds freshly inserted readings (a CTE of the
  ``INSERT ... RETURNING`` rows) into every level, in the ingest transaction, and the
  energy that the stored neighbours' changed holds move (``holds_ctes``, below).
- ``rebuild``: recompute a time range from raw rows (after a COPY backfill), holds first.

Energy (migration 0007) is measured: each reading holds its power until its turbine's
next reading, at most ``turbines.max_hold_s``; ``readings.held_s`` stores the hold, and
every level sums ``energy_kwh`` and ``covered_s`` from it (see ``ENERGY_COLUMNS``).

The park rollups (``park_rollup_<level>``, migration 0005) hold one row per bucket
for the whole park, grouped from the per-turbine rollup of the same width.
``refresh_park`` regroups the buckets an ingest transaction touched, after its
per-turbine upserts, and ``rebuild`` regroups its range.

On the community license the same relations are continuous aggregates that
TimescaleDB maintains (migrations 0002, 0005); ``engine`` tells which. There,
``rebuild`` refreshes the aggregates over its range widened to whole buckets
(``refresh_windows``), and ``refresh_stale``, after an ingest commit, refreshes the
buckets it touched that are already materialized. That code (the section "Community
license only") cannot run on the Apache build: tests prepare its statements there.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final, Literal

from windpark.db import Connection

Engine = Literal["windpark", "timescaledb"]


@dataclass(frozen=True, slots=True)
class Level:
    name: str  # table suffix: rollup_<name>
    width: str  # PostgreSQL interval
    seconds: int


LEVELS: Final = (
    Level("1m", "1 minute", 60),
    Level("10m", "10 minutes", 600),
    Level("1h", "1 hour", 3600),
    Level("1d", "1 day", 86400),
)
LEVEL_BY_NAME: Final = {level.name: level for level in LEVELS}

# rollup column prefix -> readings column
CHANNELS: Final = (("power", "power_kw"), ("wind", "wind_speed_ms"), ("temp", "temperature_c"))
# IEC 61400-26 in spirit: a turbine is available unless it is in fault or maintenance;
# idle (low wind) and storm stops are environmental and count as available.
AVAILABLE_PREDICATE: Final = "state NOT IN ('fault', 'maintenance')"

# Energy is measured, not extrapolated: each reading holds its power until the next
# reading of its turbine, for at most the turbine's ``max_hold_s`` (turbines table,
# migration 0007), and the newest reading holds nothing until its successor arrives.
# ``readings.held_s`` stores that time, so a bucket's energy and the time its readings
# cover are plain sums, which both rollup engines carry. A hold is attributed whole
# to the bucket of the reading that starts it (continuous aggregates cannot split a row
# across buckets): at a bucket edge the error is at most one hold, and the next
# bucket's first hold comes back the other way.
ENERGY_COLUMNS: Final = ("energy_kwh", "covered_s")
# ``turbines.max_hold_s`` of a turbine registered without one (migration 0007's default).
DEFAULT_MAX_HOLD_S: Final = 3.0
ENERGY_EXPRESSIONS: Final = ("sum(power_kw * held_s) / 3600.0", "sum(held_s)")


def hold_s_sql(ts: str, next_ts: str, max_hold_s: str) -> str:
    """The hold of a reading at ``ts`` whose turbine's next reading is at ``next_ts``
    (NULL: none yet), as SQL."""
    return (
        f"CASE WHEN {next_ts} IS NULL THEN 0.0"
        f" ELSE least(extract(epoch FROM {next_ts} - {ts})::float8, {max_hold_s}) END"
    )


ROLLUP_COLUMNS: Final = (
    "n",
    "n_available",
    *(f"{prefix}_{stat}" for prefix, _ in CHANNELS for stat in ("sum", "sumsq", "min", "max")),
    *ENERGY_COLUMNS,
)


PARK_COLUMNS: Final = (
    "turbines_reporting",
    "n",
    "n_available",
    "power_sum",
    "power_mean_sum",  # sum of the turbines' mean powers: the park's total power
    "wind_sum",
    "temp_sum",
    *ENERGY_COLUMNS,
)
# The park row of a bucket from its per-turbine rows (migrations 0005 and 0007).
_PARK_EXPRESSIONS: Final = (
    "count(*), sum(n)::bigint, sum(n_available)::bigint, sum(power_sum),"
    " sum(power_sum / n), sum(wind_sum), sum(temp_sum), sum(energy_kwh), sum(covered_s)"
)
# Advisory-lock namespace of the park rows (pg_advisory_xact_lock(int4, int4)): this,
# then the UTC day's number since the epoch. Every park bucket of every level lies
# inside one UTC day (the 1d bucket), so the day's lock covers all of them.
_PARK_LOCK_SPACE: Final = 0x57500000
_DAY_S: Final = 86_400
# Advisory-lock namespace of a turbine's holds: this, then hashtext(turbine_id). Taken
# before any park day lock, by ingest and rebuild alike.
_TURBINE_LOCK_SPACE: Final = 0x57500001
# Days rebuilt per transaction: each holds this many day locks at most, and the
# per-turbine rows of the span.
_REBUILD_SPAN_DAYS: Final = 31


def aggregate_expressions(new: str | None = None) -> str:
    """The ``ROLLUP_COLUMNS`` of a group of readings (columns of ``readings``, held_s
    included). With ``new`` (a boolean column), only the rows where it holds count as
    readings; the others only move energy and covered time (a neighbour's changed hold,
    whose ``held_s`` is then the change)."""
    only = f" FILTER (WHERE {new})" if new else ""
    exprs = [f"count(*){only}", f"count(*) FILTER (WHERE {AVAILABLE_PREDICATE}{_and(new)})"]
    for _, column in CHANNELS:
        exprs += [
            f"sum({column}){only}",
            f"sum({column} * {column}){only}",
            f"min({column}){only}",
            f"max({column}){only}",
        ]
    return ", ".join([*exprs, *ENERGY_EXPRESSIONS])


def _and(condition: str | None) -> str:
    return f" AND {condition}" if condition else ""


def _merge_assignments(table: str) -> str:
    sets = []
    for col in ROLLUP_COLUMNS:
        if col.endswith("_min"):
            sets.append(f"{col} = least({table}.{col}, EXCLUDED.{col})")
        elif col.endswith("_max"):
            sets.append(f"{col} = greatest({table}.{col}, EXCLUDED.{col})")
        else:
            sets.append(f"{col} = {table}.{col} + EXCLUDED.{col}")
    return ", ".join(sets)


def holds_ctes(source: str) -> str:
    """CTEs (comma-led) that find the holds a batch sets: ``holds`` (turbine_id, ts,
    held_s) for every row of CTE ``source`` (turbine_id, ts) and for the stored
    readings whose hold it changes, listed in ``neighbours`` (turbine_id, ts, power_kw,
    held_s, after).

    Per turbine of the batch, the stored rows that matter are the last one before the
    batch, those among its instants (late readings interleave with stored ones) and the
    first one after it (``after``: it bounds the batch's last hold, its own is unchanged).
    The caller holds the turbines' locks (``lock_turbines``), so no other writer
    inserts between them until the commit.
    """
    stored = "turbine_id, ts, power_kw, held_s"
    max_hold = f"coalesce(t.max_hold_s, {DEFAULT_MAX_HOLD_S})"
    return f"""
, span AS (
    SELECT turbine_id, min(ts) AS lo, max(ts) AS hi FROM {source} GROUP BY turbine_id
), neighbours AS (
    SELECT p.*, false AS after FROM span s CROSS JOIN LATERAL (
        SELECT {stored} FROM readings r
        WHERE r.turbine_id = s.turbine_id AND r.ts < s.lo ORDER BY r.ts DESC LIMIT 1) p
    UNION ALL
    -- An index range scan per turbine: as a plain join (or a LATERAL the planner pulls
    -- up, hence OFFSET 0) it hash-joined a scan of every chunk.
    SELECT i.*, false FROM span s CROSS JOIN LATERAL (
        SELECT {stored} FROM readings r
        WHERE r.turbine_id = s.turbine_id AND r.ts >= s.lo AND r.ts <= s.hi OFFSET 0) i
    UNION ALL
    SELECT n.*, true FROM span s CROSS JOIN LATERAL (
        SELECT {stored} FROM readings r
        WHERE r.turbine_id = s.turbine_id AND r.ts > s.hi ORDER BY r.ts LIMIT 1) n
), holds AS (
    SELECT k.turbine_id, k.ts, {hold_s_sql("k.ts", "k.next_ts", max_hold)} AS held_s
    FROM (
        SELECT turbine_id, ts, lead(ts) OVER (PARTITION BY turbine_id ORDER BY ts) AS next_ts
        FROM (SELECT turbine_id, ts FROM neighbours
              UNION SELECT turbine_id, ts FROM {source}) keys
    ) k
    -- LEFT: a reading of an unregistered turbine keeps its row here, so that its
    -- insert fails on the readings' foreign key instead of being silently left out.
    LEFT JOIN turbines t USING (turbine_id)
)"""


MOVED_CTE: Final = """
, moved AS (
    -- Stored neighbours whose hold the batch changed: held_s is the change.
    UPDATE readings r SET held_s = h.held_s
    FROM neighbours n JOIN holds h USING (turbine_id, ts)
    WHERE NOT n.after AND h.held_s <> n.held_s AND r.turbine_id = n.turbine_id AND r.ts = n.ts
    RETURNING r.turbine_id, r.ts, r.power_kw, h.held_s - n.held_s AS held_s
)"""


def upsert_ctes(inserted: str, moved: str) -> str:
    """CTEs (comma-led) that add the rows of CTE ``inserted`` (columns of ``readings``)
    into every rollup level, and the changed holds of CTE ``moved`` (turbine_id, ts,
    power_kw, held_s: the change) into their buckets' energy and covered time.

    Within one statement each (turbine, bucket) appears once per level, as ON CONFLICT
    DO UPDATE requires: buckets with new readings are upserted, the others (a neighbour
    alone moved there) updated.
    """
    columns = ", ".join(ROLLUP_COLUMNS)
    channels = ", ".join(c for _, c in CHANNELS)
    nulls = ", ".join("NULL::float8" for _, c in CHANNELS if c != "power_kw")
    ctes = [
        f"""
            , contributions AS (
                SELECT ts, turbine_id, state, {channels}, held_s, true AS new FROM {inserted}
                UNION ALL
                SELECT ts, turbine_id, NULL, power_kw, {nulls}, held_s, false FROM {moved}
            )"""
    ]
    energy = ", ".join(f"{c} = r.{c} + d.{c}" for c in ENERGY_COLUMNS)
    energy_sums = ", ".join(
        f"{e} AS {c}" for e, c in zip(ENERGY_EXPRESSIONS, ENERGY_COLUMNS, strict=True)
    )
    for level in LEVELS:
        table = f"rollup_{level.name}"
        bucket = f"time_bucket(INTERVAL '{level.width}', ts)"
        ctes.append(
            f"""
            , upsert_{level.name} AS (
                INSERT INTO {table} AS r (bucket, turbine_id, {columns})
                SELECT {bucket}, turbine_id, {aggregate_expressions("new")}
                FROM contributions
                GROUP BY 1, 2 HAVING bool_or(new)
                ON CONFLICT (turbine_id, bucket) DO UPDATE SET {_merge_assignments("r")}
            ), adjust_{level.name} AS (
                UPDATE {table} r SET {energy}
                FROM (SELECT {bucket} AS bucket, turbine_id, {energy_sums}
                      FROM contributions GROUP BY 1, 2 HAVING NOT bool_or(new)) d
                WHERE r.turbine_id = d.turbine_id AND r.bucket = d.bucket
            )"""
        )
    return "".join(ctes)


def _regroup_park_sql(level: Level, where: str) -> str:
    """Upsert the park rows of ``level`` grouped from the per-turbine rows ``where``
    selects: the one regroup that ingest and rebuild both run."""
    updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in PARK_COLUMNS)
    return f"""
        INSERT INTO park_rollup_{level.name} (bucket, {", ".join(PARK_COLUMNS)})
        SELECT bucket, {_PARK_EXPRESSIONS}
        FROM rollup_{level.name}
        WHERE {where}
        GROUP BY bucket
        ON CONFLICT (bucket) DO UPDATE SET {updates}"""


def _refresh_park_sql() -> str:
    """One statement, a CTE per level, over the buckets that hold the touched instants.

    $1: the instants; $2, $3: the first and the last of them. The range on ``bucket``
    lets TimescaleDB skip, at executor start-up, every chunk outside it: the buckets
    from the subquery alone would be probed in every chunk of years of rollups.
    """
    ctes = []
    for level in LEVELS:
        width = f"INTERVAL '{level.width}'"
        where = (
            f"bucket >= time_bucket({width}, $2::timestamptz)"
            f" AND bucket <= time_bucket({width}, $3::timestamptz)"
            f" AND bucket IN (SELECT DISTINCT time_bucket({width}, ts) FROM touched)"
        )
        ctes.append(f", park_{level.name} AS ({_regroup_park_sql(level, where)})")
    return (
        "WITH touched AS (SELECT unnest($1::timestamptz[]) AS ts)\n"
        + "\n".join(ctes)
        + "\nSELECT 1"
    )


REFRESH_PARK_SQL: Final = _refresh_park_sql()
LOCK_PARK_DAY_SQL: Final = f"SELECT pg_advisory_xact_lock({_PARK_LOCK_SPACE}, $1::int4)"


def park_lock_days(timestamps: Iterable[datetime]) -> list[int]:
    """The UTC days (numbered from the epoch) whose park rows the timestamps touch,
    sorted: every transaction takes them in this one order, so none can deadlock
    on them."""
    return sorted({int(ts.timestamp() // _DAY_S) for ts in timestamps})


async def _lock_park_days(conn: Connection, days: Sequence[int]) -> None:
    # One at a time, in order (a batch touches one day, rarely a few: the validator
    # accepts readings up to 7 days old).
    for day in days:
        await conn.execute(LOCK_PARK_DAY_SQL, day)


async def refresh_park(conn: Connection, timestamps: Sequence[datetime]) -> None:
    """Regroup the park rows of the buckets holding ``timestamps`` (windpark engine).

    Call it inside the transaction that upserted the per-turbine rollups, after them,
    at READ COMMITTED (PostgreSQL's default, where each statement takes a new
    snapshot), and once per transaction. A park row is a function of every
    turbine's row, so two writers of one bucket must not regroup from snapshots
    that miss each other's rows: each first takes the advisory lock of the bucket's
    UTC day, held until its commit, then regroups in a new statement, whose
    snapshot includes every writer that held the lock before it. Live writers
    (they all write today) therefore queue there for the time of a regroup and a
    commit.
    """
    if not timestamps:
        return
    await _lock_park_days(conn, park_lock_days(timestamps))
    await conn.execute(REFRESH_PARK_SQL, list(timestamps), min(timestamps), max(timestamps))


LOCK_TURBINES_SQL: Final = f"""
SELECT pg_advisory_xact_lock({_TURBINE_LOCK_SPACE}, h)
FROM (SELECT DISTINCT hashtext(t) AS h FROM unnest($1::text[]) AS t ORDER BY 1) ordered
"""


async def lock_turbines(conn: Connection, turbine_ids: Iterable[str]) -> None:
    """Serialize the writers of these turbines' holds until the commit.

    A hold depends on the turbine's next reading: two transactions inserting readings
    of one turbine side by side would each compute it from a snapshot without the
    other's rows. Taken in one order (by hash), before the park day locks.
    """
    await conn.execute(LOCK_TURBINES_SQL, sorted(set(turbine_ids)))


# Rebuild: the holds of every reading of [$1, $2) and of the last one before it, from
# the readings as stored. $3: turbine ids, or NULL for all. Returns the earliest reading
# whose hold changed, or NULL.
SETTLE_HOLDS_SQL: Final = f"""
WITH bounds AS (
    SELECT t.turbine_id, t.max_hold_s,
           coalesce((SELECT max(r.ts) FROM readings r
                     WHERE r.turbine_id = t.turbine_id AND r.ts < $1), $1) AS lo,
           (SELECT min(r.ts) FROM readings r
            WHERE r.turbine_id = t.turbine_id AND r.ts >= $2) AS first_after
    FROM turbines t
    WHERE $3::text[] IS NULL OR t.turbine_id = ANY($3::text[])
), settled AS (
    SELECT r.turbine_id, r.ts, r.held_s,
           {hold_s_sql("r.ts", "coalesce(lead(r.ts) OVER w, b.first_after)", "b.max_hold_s")}
               AS new_held_s
    FROM bounds b JOIN readings r
        ON r.turbine_id = b.turbine_id AND r.ts >= b.lo AND r.ts < $2
    WINDOW w AS (PARTITION BY r.turbine_id ORDER BY r.ts)
), changed AS (
    UPDATE readings r SET held_s = s.new_held_s
    FROM settled s
    WHERE s.new_held_s <> s.held_s AND r.turbine_id = s.turbine_id AND r.ts = s.ts
    RETURNING r.ts
)
SELECT min(ts) FROM changed
"""


async def settle_holds(
    conn: Connection, start: datetime, end: datetime, turbines: list[str] | None
) -> datetime:
    """Set the holds of [start, end) from the stored readings (rows written by COPY hold
    nothing yet), in spans of the rebuild's length, and return where the rollups need
    rebuilding from: ``start``, or the reading before it when its hold changed."""
    earliest = start
    span = timedelta(days=_REBUILD_SPAN_DAYS)
    cursor = start
    while cursor < end:
        span_end = min(end, cursor + span)
        async with conn.transaction():
            await lock_turbines(conn, turbines or await _all_turbines(conn))
            changed: datetime | None = await conn.fetchval(
                SETTLE_HOLDS_SQL, cursor, span_end, turbines
            )
        if changed is not None and changed < earliest:
            earliest = changed
        cursor = span_end
    return earliest


async def max_holds(conn: Connection, turbine_ids: Sequence[str]) -> dict[str, float]:
    """Each turbine's ``max_hold_s`` (for writers of rows with their hold, backfill's COPY)."""
    rows = await conn.fetch(
        "SELECT turbine_id, max_hold_s FROM turbines WHERE turbine_id = ANY($1::text[])",
        list(turbine_ids),
    )
    return {row["turbine_id"]: row["max_hold_s"] for row in rows}


async def _all_turbines(conn: Connection) -> list[str]:
    return [row[0] for row in await conn.fetch("SELECT turbine_id FROM turbines")]


async def engine(conn: Connection) -> Engine:
    """Who maintains the rollups in this database: windpark (Apache) or TimescaleDB."""
    continuous = await conn.fetchval(
        "SELECT count(*) FROM timescaledb_information.continuous_aggregates"
        " WHERE view_name = 'rollup_1m'"
    )
    return "timescaledb" if continuous else "windpark"


async def rebuild(
    conn: Connection,
    start: datetime,
    end: datetime,
    turbine_ids: Sequence[str] | None = None,
    *,
    progress: Callable[[int, int], None] | None = None,
) -> None:
    """Recompute every level for the buckets that overlap [start, end) from raw readings,
    in day-aligned spans of 31 days, one transaction each.

    For backfilled history (``turbine_ids``: only theirs). A live concentrator may
    write meanwhile, those turbines included (a backfill ends where their live
    readings begin): the per-turbine rows are serialized by their row locks (a
    rebuilt row holds what was committed before it; what is written after adds into
    it), the park rows by the day locks that ``refresh_park`` takes too; a deadlock,
    should one occur, is detected by PostgreSQL and the concentrator retries its
    batch. Not to run over a range whose raw rows retention has already dropped (the
    rollups are then the only history left). ``progress(days_done, days)``, in UTC
    days touched, is called after each span (windpark engine).
    """
    # Energy: the readings' holds first (both engines sum them); a changed hold of the
    # reading before ``start`` widens the range to its bucket.
    turbine_list = list(turbine_ids) if turbine_ids is not None else None
    start = await settle_holds(conn, start, end, turbine_list)
    if await engine(conn) == "timescaledb":
        await refresh_continuous(conn, start, end)
        if progress is not None:
            total_days = len(_utc_days(start, end))
            progress(total_days, total_days)
        return
    # Day-aligned spans, one transaction each: a long backfill neither holds one
    # enormous transaction nor more day locks than a span has days.
    span = timedelta(days=_REBUILD_SPAN_DAYS)
    days = _utc_days(start, end)
    cursor = start
    while cursor < end:
        span_end = min(end, _floor_day(cursor) + span)
        async with conn.transaction():
            await _rebuild_span(conn, cursor, span_end, turbine_list)
        cursor = span_end
        if progress is not None:
            done = _utc_days(start, span_end)
            progress(len(done), len(days))


# Community license only: the continuous aggregates (migrations 0002, 0005) --------------------

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
# The window arguments of refresh_continuous_aggregate are of type "any": untyped
# parameters cannot be planned, so they are cast here.
_REFRESH_SQL: Final = (
    "CALL refresh_continuous_aggregate('{view}', $1::timestamptz, $2::timestamptz)"
)


def continuous_views(level: Level) -> tuple[str, str]:
    """The continuous aggregates of ``level``, in refresh order: the park level reads
    the per-turbine level of the same width."""
    return (f"rollup_{level.name}", f"park_rollup_{level.name}")


def refresh_sql(view: str) -> str:
    """The refresh of one continuous aggregate over [$1, $2)."""
    return _REFRESH_SQL.format(view=view)


def floor_bucket(t: datetime, width: timedelta) -> datetime:
    """``time_bucket(width, t)`` as migrations 0002 and 0005 call it: no time zone and
    no origin, so buckets are aligned in UTC on TimescaleDB's default origin
    (2000-01-03 00:00 UTC, a whole number of days after the Unix epoch, so for widths
    that divide a day the epoch gives the same grid). Exact (integer microseconds)."""
    return _EPOCH + (t - _EPOCH) // width * width


def refresh_windows(
    start: datetime, end: datetime, now: datetime
) -> list[tuple[Level, datetime, datetime]]:
    """The window to refresh at each level (finest first) so that every bucket of every
    level that overlaps [start, end) is recomputed; levels with nothing to refresh are
    left out.

    ``refresh_continuous_aggregate`` refreshes only the buckets lying wholly inside its
    window (and refuses a window holding none), so a window must be widened to bucket
    boundaries. Every level gets the same window, widened to whole UTC days (the
    coarsest bucket): a level is computed from the level below, which must therefore
    be fresh over all of the coarser level's buckets. Each window ends at the start of
    the level's current bucket, never later: a refresh materializes the buckets it
    covers, and real-time aggregation (materialized_only = false) reads only the
    buckets after the last materialized one, so a current bucket materialized now
    would miss the readings still to come until a policy refreshed it again (the
    1-day policy would not before tomorrow's end). The current buckets are real-time
    anyway.
    """
    day = timedelta(seconds=LEVELS[-1].seconds)
    lo = floor_bucket(start, day)
    hi = floor_bucket(end - timedelta(microseconds=1), day) + day
    windows = []
    for level in LEVELS:
        level_end = min(hi, floor_bucket(now, timedelta(seconds=level.seconds)))
        if lo < level_end:
            windows.append((level, lo, level_end))
    return windows


async def refresh_continuous(conn: Connection, start: datetime, end: datetime) -> None:
    """Refresh every continuous aggregate over the buckets that overlap [start, end):
    outside a transaction (TimescaleDB refuses one), finest level first, each park
    level after its per-turbine level. The current bucket of each level is left to
    real-time aggregation (see ``refresh_windows``); ``now`` is the database's."""
    now = await conn.fetchval("SELECT now()")
    for level, lo, hi in refresh_windows(start, end, now):
        for view in continuous_views(level):
            await conn.execute(refresh_sql(view), lo, hi)


# Where each continuous aggregate's materialized part ends (the end of its newest stored
# bucket); later buckets are aggregated in real time when read. An aggregate never
# refreshed has the smallest time as its watermark (not a Python datetime): left out.
WATERMARKS_SQL: Final = """
    SELECT view, watermark FROM (
        SELECT user_view_name AS view, _timescaledb_functions.to_timestamp(
            _timescaledb_functions.cagg_watermark(mat_hypertable_id)) AS watermark
        FROM _timescaledb_catalog.continuous_agg
    ) w
    WHERE watermark > '0001-01-01'
"""


def stale_span(
    timestamps: Iterable[datetime], watermarks: Mapping[str, datetime]
) -> tuple[datetime, datetime] | None:
    """[first, last] of the instants whose bucket is already materialized in some
    continuous aggregate (it starts before that aggregate's watermark), so that a reading
    written there stays out of the aggregate until a refresh; None when every bucket
    touched is still aggregated in real time (live readings)."""
    stale = [
        ts
        for ts in timestamps
        for level in LEVELS
        for view in continuous_views(level)
        if view in watermarks
        and floor_bucket(ts, timedelta(seconds=level.seconds)) < watermarks[view]
    ]
    return (min(stale), max(stale)) if stale else None


async def refresh_stale(conn: Connection, timestamps: Sequence[datetime]) -> None:
    """After the commit of readings at ``timestamps``: refresh the buckets they touched
    that are already materialized, so the continuous aggregates hold them at once, as
    the Apache engine's ingest transaction does. Live readings land in buckets that
    real-time aggregation serves, and cost one catalog query."""
    watermarks = {row["view"]: row["watermark"] for row in await conn.fetch(WATERMARKS_SQL)}
    span = stale_span(timestamps, watermarks)
    if span is not None:
        await refresh_continuous(conn, span[0], span[1] + timedelta(microseconds=1))


def _floor_day(t: datetime) -> datetime:
    return datetime.fromtimestamp(t.timestamp() // _DAY_S * _DAY_S, UTC)


async def _rebuild_span(
    conn: Connection, start: datetime, end: datetime, turbines: list[str] | None
) -> None:
    columns = ", ".join(ROLLUP_COLUMNS)
    for level in LEVELS:
        table = f"rollup_{level.name}"
        await conn.execute(
            f"DELETE FROM {table} WHERE bucket >= {_lo(level)} AND bucket < {_hi(level)}"
            " AND ($3::text[] IS NULL OR turbine_id = ANY($3::text[]))",
            start,
            end,
            turbines,
        )
        await conn.execute(
            f"""
            INSERT INTO {table} (bucket, turbine_id, {columns})
            SELECT time_bucket(INTERVAL '{level.width}', ts), turbine_id,
                   {aggregate_expressions()}
            FROM readings
            WHERE ts >= {_lo(level)} AND ts < {_hi(level)}
              AND ($3::text[] IS NULL OR turbine_id = ANY($3::text[]))
            GROUP BY 1, 2
            """,
            start,
            end,
            turbines,
        )
    # Every turbine's rows make a park row, not only those rebuilt. Live writers may
    # be regrouping the same days: under their day locks, as refresh_park does, taken
    # one day at a time in ascending order, so the newest day (the one live writers
    # want) is locked last, held only for its own regroup and the commit.
    # $1, $2: the span, as for the per-turbine rows; $3: the day's first second.
    in_day = "{col} >= greatest({lo}, $3) AND {col} < least({hi}, $3 + INTERVAL '1 day')"
    for day in _utc_days(start, end):
        await conn.execute(LOCK_PARK_DAY_SQL, day)
        day_start = datetime.fromtimestamp(day * _DAY_S, UTC)
        for level in LEVELS:
            lo, hi = _lo(level), _hi(level)
            await conn.execute(
                _regroup_park_sql(level, in_day.format(col="bucket", lo=lo, hi=hi)),
                start,
                end,
                day_start,
            )
            # Buckets left without any turbine row (a rebuild found no readings there).
            await conn.execute(
                f"""
                DELETE FROM park_rollup_{level.name} p
                WHERE {in_day.format(col="p.bucket", lo=lo, hi=hi)}
                  AND NOT EXISTS (SELECT 1 FROM rollup_{level.name} r
                                  WHERE r.bucket = p.bucket
                                    AND {in_day.format(col="r.bucket", lo=lo, hi=hi)})
                """,
                start,
                end,
                day_start,
            )


def _utc_days(start: datetime, end: datetime) -> range:
    """The UTC days (numbered from the epoch) that [start, end) touches."""
    return range(int(start.timestamp() // _DAY_S), int((end.timestamp() - 1e-6) // _DAY_S) + 1)


def _lo(level: Level) -> str:
    """The first bucket of ``level`` overlapping [$1, $2)."""
    return f"time_bucket(INTERVAL '{level.width}', $1::timestamptz)"


def _hi(level: Level) -> str:
    """The end of the last bucket of ``level`` overlapping [$1, $2)."""
    return (
        f"time_bucket(INTERVAL '{level.width}', $2::timestamptz - INTERVAL '1 microsecond')"
        f" + INTERVAL '{level.width}'"
    )
