"""The API's reads: SQL a reader can paste into psql, and small functions that run it.

Aggregates come from the rollup tables (sums per turbine and bucket, and per park and
bucket, kept in the ingest transaction), never from a scan of raw readings. Means and
deviations are derived from the sums here, as the ``rollup_*_stats`` views derive them:

    mean = sum / n        std = sqrt((sumsq - sum^2 / n) / (n - 1))   (sample, n > 1)

Energy is not derived from the mean: ``energy_kwh`` and ``covered_s`` are sums of the
readings' power x hold and holds (``windpark.rollups``), read as they are.
"""

from __future__ import annotations

import base64
import binascii
from datetime import datetime
from functools import cache
from typing import Final

import asyncpg

from services.aggregator.buckets import Window
from windpark.db import Connection
from windpark.rollups import ROLLUP_COLUMNS

TURBINES_SQL: Final = """
SELECT turbine_id, name, model, rated_power_kw, created_at
FROM turbines
ORDER BY turbine_id
"""

# Every registered turbine, with nulls for one that has sent nothing yet.
LATEST_SQL: Final = """
SELECT t.turbine_id, t.name, t.model, t.rated_power_kw,
       l.ts, extract(epoch FROM now() - l.ts)::float8 AS age_s, l.seq, l.state,
       l.power_kw, l.wind_speed_ms, l.temperature_c, l.rotor_rpm, l.pitch_deg,
       l.nacelle_temperature_c, l.wind_direction_deg, l.setpoint_kw,
       l.quality_flags, l.source, l.received_at,
       now() AS as_of
FROM turbines t
LEFT JOIN latest_readings l USING (turbine_id)
WHERE $1::text IS NULL OR t.turbine_id = $1
ORDER BY t.turbine_id
"""

TURBINE_EXISTS_SQL: Final = "SELECT EXISTS (SELECT 1 FROM turbines WHERE turbine_id = $1)"

TURBINE_COUNT_SQL: Final = "SELECT count(*) FROM turbines"

TURBINE_MODEL_SQL: Final = "SELECT model FROM turbines WHERE turbine_id = $1"

# Keyset page: rows after the cursor's ts, by the primary key (turbine_id, ts).
READINGS_SQL: Final = """
SELECT ts, seq, state, power_kw, wind_speed_ms, temperature_c, rotor_rpm, pitch_deg,
       nacelle_temperature_c, wind_direction_deg, setpoint_kw, quality_flags, source,
       received_at
FROM readings
WHERE turbine_id = $1 AND ts >= $2 AND ts < $3 AND ($4::timestamptz IS NULL OR ts > $4)
ORDER BY ts
LIMIT $5
"""

# The columns of both park queries, in this order (aggregates.py unpacks them).
PARK_BUCKET_COLUMNS: Final = (
    "bucket",
    "turbines_reporting",
    "n",
    "park_mean_power_kw",
    "park_total_power_kw",
    "wind_speed_avg_ms",
    "temperature_avg_c",
    "availability",
    "energy_kwh",
    "covered_s",
)

# sum(bigint) is numeric: cast back, the answers carry counts as integers.
_SUMS: Final = """sum(n)::int8 AS n, sum(n_available)::int8 AS n_available,
        sum(power_sum) AS power_sum, sum(power_sumsq) AS power_sumsq,
        min(power_min) AS power_min, max(power_max) AS power_max,
        sum(wind_sum) AS wind_sum, sum(wind_sumsq) AS wind_sumsq,
        min(wind_min) AS wind_min, max(wind_max) AS wind_max,
        sum(temp_sum) AS temp_sum, sum(temp_sumsq) AS temp_sumsq,
        min(temp_min) AS temp_min, max(temp_max) AS temp_max,
        sum(energy_kwh) AS energy_kwh, sum(covered_s) AS covered_s"""


def _std(prefix: str) -> str:
    # greatest(): rounding can leave a tiny negative variance when all samples are equal.
    return (
        f"CASE WHEN n > 1 THEN sqrt(greatest(({prefix}_sumsq - {prefix}_sum * {prefix}_sum / n)"
        f" / (n - 1), 0)) END"
    )


def _per_turbine_cte(table: str, by_local_day: bool) -> str:
    """Sums per turbine and bucket; for local days, hours (or finer) summed into days.

    $1, $2: the window [start, end) of bucket starts; $3: one turbine id or null;
    $4: the IANA zone of local days (only when by_local_day).
    """
    if not by_local_day:
        # Rows are already one per turbine and bucket: no regrouping (it was half of a
        # year-long hourly query's time).
        return f"""
WITH per_turbine AS (
    SELECT bucket, turbine_id, {", ".join(ROLLUP_COLUMNS)}
    FROM {table}
    WHERE bucket >= $1 AND bucket < $2 AND ($3::text IS NULL OR turbine_id = $3)
)"""
    return f"""
WITH per_turbine AS (
    SELECT time_bucket(INTERVAL '1 day', bucket, $4::text) AS bucket, turbine_id,
        {_SUMS}
    FROM {table}
    WHERE bucket >= $1 AND bucket < $2 AND ($3::text IS NULL OR turbine_id = $3)
    GROUP BY 1, 2
)"""


@cache
def turbine_buckets_sql(table: str, by_local_day: bool) -> str:
    """Statistics per turbine and bucket. For example, with rollup_1m::

    WITH per_turbine AS (SELECT bucket, turbine_id, sum(n) AS n, ... FROM rollup_1m
                         WHERE bucket >= $1 AND bucket < $2 ... GROUP BY 1, 2)
    SELECT bucket, turbine_id, n, power_sum / n AS power_avg_kw, ... FROM per_turbine
    """
    return f"""{_per_turbine_cte(table, by_local_day)}
SELECT bucket, turbine_id, n, n_available,
       n_available::float8 / n AS availability,
       power_sum / n AS power_avg_kw, power_min AS power_min_kw, power_max AS power_max_kw,
       {_std("power")} AS power_std_kw,
       wind_sum / n AS wind_speed_avg_ms, wind_min AS wind_speed_min_ms,
       wind_max AS wind_speed_max_ms, {_std("wind")} AS wind_speed_std_ms,
       temp_sum / n AS temperature_avg_c, temp_min AS temperature_min_c,
       temp_max AS temperature_max_c, {_std("temp")} AS temperature_std_c,
       energy_kwh, covered_s
FROM per_turbine
ORDER BY bucket, turbine_id
"""


@cache
def park_buckets_sql(table: str, by_local_day: bool) -> str:
    """Park statistics per bucket.

    park_mean_power_kw is the mean of every reading in the bucket, whatever turbine sent
    it: sum(power_sum) / sum(n), which equals avg(power_kw) over the raw rows of the
    bucket. park_total_power_kw adds up each turbine's mean power.
    """
    return f"""{_per_turbine_cte(table, by_local_day)}
SELECT bucket, count(*) AS turbines_reporting, sum(n)::int8 AS n,
       sum(power_sum) / sum(n) AS park_mean_power_kw,
       sum(power_sum / n) AS park_total_power_kw,
       sum(wind_sum) / sum(n) AS wind_speed_avg_ms,
       sum(temp_sum) / sum(n) AS temperature_avg_c,
       sum(n_available)::float8 / sum(n) AS availability,
       sum(energy_kwh) AS energy_kwh, sum(covered_s) AS covered_s
FROM per_turbine
GROUP BY bucket
ORDER BY bucket
"""


@cache
def park_rollup_sql(table: str) -> str:
    """Park statistics per bucket from the park rollup (one row per bucket), the same
    numbers ``park_buckets_sql`` groups from the per-turbine rows; for the whole park
    in UTC-aligned buckets. For example::

    SELECT bucket, turbines_reporting, n, power_sum / n AS park_mean_power_kw, ...
    FROM park_rollup_1h WHERE bucket >= $1 AND bucket < $2 ORDER BY bucket
    """
    return f"""
SELECT bucket, turbines_reporting, n,
       power_sum / n AS park_mean_power_kw,
       power_mean_sum AS park_total_power_kw,
       wind_sum / n AS wind_speed_avg_ms,
       temp_sum / n AS temperature_avg_c,
       n_available::float8 / n AS availability,
       energy_kwh, covered_s
FROM {table}
WHERE bucket >= $1 AND bucket < $2
ORDER BY bucket
"""


def _window_args(window: Window, turbine_id: str | None) -> list[object]:
    args: list[object] = [window.start, window.end, turbine_id]
    if window.by_local_day:
        args.append(window.tz_name)
    return args


async def ping(conn: Connection) -> None:
    """A round trip that proves the database answers (readiness)."""
    await conn.fetchval("SELECT 1")


async def database_now(conn: Connection) -> datetime:
    now: datetime = await conn.fetchval("SELECT now()")
    return now


async def fetch_turbines(conn: Connection) -> list[asyncpg.Record]:
    return await conn.fetch(TURBINES_SQL)


async def count_turbines(conn: Connection) -> int:
    count: int = await conn.fetchval(TURBINE_COUNT_SQL)
    return count


async def turbine_exists(conn: Connection, turbine_id: str) -> bool:
    exists: bool = await conn.fetchval(TURBINE_EXISTS_SQL, turbine_id)
    return exists


async def turbine_model(conn: Connection, turbine_id: str) -> str | None:
    """The turbine's model name; None when it is not registered."""
    model: str | None = await conn.fetchval(TURBINE_MODEL_SQL, turbine_id)
    return model


async def fetch_latest(conn: Connection, turbine_id: str | None = None) -> list[asyncpg.Record]:
    return await conn.fetch(LATEST_SQL, turbine_id)


async def fetch_readings(
    conn: Connection,
    turbine_id: str,
    *,
    start: datetime,
    end: datetime,
    after: datetime | None,
    limit: int,
) -> list[asyncpg.Record]:
    return await conn.fetch(READINGS_SQL, turbine_id, start, end, after, limit)


async def fetch_turbine_buckets(
    conn: Connection, window: Window, turbine_id: str | None
) -> list[asyncpg.Record]:
    sql = turbine_buckets_sql(window.table, window.by_local_day)
    return await conn.fetch(sql, *_window_args(window, turbine_id))


async def fetch_park_buckets(
    conn: Connection, window: Window, turbine_id: str | None
) -> list[asyncpg.Record]:
    """Park statistics grouped from the turbine rows of the window's table."""
    sql = park_buckets_sql(window.table, window.by_local_day)
    return await conn.fetch(sql, *_window_args(window, turbine_id))


async def fetch_park_rollup(conn: Connection, window: Window) -> list[asyncpg.Record]:
    """Park statistics from the window's park rollup: the same numbers as
    ``fetch_park_buckets`` for the whole park, one row per bucket to read."""
    if window.park_table is None:
        raise ValueError("local-day windows have no park rollup")
    return await conn.fetch(park_rollup_sql(window.park_table), window.start, window.end)


# Cursors ------------------------------------------------------------------------------------
# Opaque to clients; inside, the ts of the last row sent (unique per turbine).


def encode_cursor(ts: datetime) -> str:
    return base64.urlsafe_b64encode(ts.isoformat().encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> datetime:
    """The ts inside a cursor; ValueError for anything this API did not hand out."""
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        ts = datetime.fromisoformat(text)
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise ValueError("invalid cursor") from exc
    if ts.tzinfo is None:
        raise ValueError("invalid cursor")
    return ts
