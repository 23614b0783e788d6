"""The aggregate answers, shared by the seed routes (/agregados/) and /v1.

Everything here reads the rollup tables through ``queries``; the window (which
buckets, which table, which zone) comes from ``buckets.resolve_window``.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from services.aggregator import queries, schemas
from services.aggregator.buckets import BucketSize, Window, floor_day, floor_fixed
from windpark.db import Connection

_HOUR_S = 3600.0


def _elapsed_h(start: datetime, end: datetime, now: datetime) -> float:
    """Hours of the bucket that have passed: all of it, or up to now while it is partial."""
    covered = min(end, now) - start
    return max(covered, timedelta(0)).total_seconds() / _HOUR_S


def _turbine_stats(row: asyncpg.Record, hours: float) -> dict[str, Any]:
    return {
        "n": row["n"],
        "n_available": row["n_available"],
        "availability": row["availability"],
        "power_avg_kw": row["power_avg_kw"],
        "power_min_kw": row["power_min_kw"],
        "power_max_kw": row["power_max_kw"],
        "power_std_kw": row["power_std_kw"],
        "wind_speed_avg_ms": row["wind_speed_avg_ms"],
        "wind_speed_min_ms": row["wind_speed_min_ms"],
        "wind_speed_max_ms": row["wind_speed_max_ms"],
        "wind_speed_std_ms": row["wind_speed_std_ms"],
        "temperature_avg_c": row["temperature_avg_c"],
        "temperature_min_c": row["temperature_min_c"],
        "temperature_max_c": row["temperature_max_c"],
        "temperature_std_c": row["temperature_std_c"],
        # Mean power over the bucket's (elapsed) duration: an estimate that assumes the
        # readings sample the bucket evenly; readings carry no sampling interval.
        "energy_kwh": row["power_avg_kw"] * hours,
    }


def _times(window: Window, start: datetime, now: datetime) -> dict[str, Any]:
    end = window.bucket_end(start)
    return {
        "bucket_start": window.label(start),
        "bucket_end": window.label(end),
        "duration_s": (end - start).total_seconds(),
        "partial": end > now,
    }


def _header(window: Window, now: datetime) -> dict[str, Any]:
    return {
        "bucket": window.size.value,
        "tz": window.tz_name,
        "window_start": window.label(window.start),
        "window_end": window.label(window.end),
        "generated_at": window.label(now),
        "complete_until": window.label(_complete_until(window, now)),
    }


def _complete_until(window: Window, now: datetime) -> datetime:
    if window.size is BucketSize.DAY:
        return floor_day(now, window.zone)
    return floor_fixed(now, window.size.nominal)


async def park_aggregates(
    conn: Connection,
    window: Window,
    *,
    now: datetime,
    turbine_id: str | None = None,
    per_turbine: bool = True,
) -> schemas.ParkAggregates:
    park_rows = await queries.fetch_park_buckets(conn, window, turbine_id)
    turbine_rows = (
        await queries.fetch_turbine_buckets(conn, window, turbine_id) if per_turbine else []
    )
    per_bucket: dict[datetime, list[schemas.TurbineBucketStats]] = defaultdict(list)
    for row in turbine_rows:
        start = row["bucket"]
        hours = _elapsed_h(start, window.bucket_end(start), now)
        per_bucket[start].append(
            schemas.TurbineBucketStats.model_validate(
                {"turbine_id": row["turbine_id"], **_turbine_stats(row, hours)}
            )
        )
    buckets = []
    for row in park_rows:
        start = row["bucket"]
        turbines = per_bucket[start]
        buckets.append(
            schemas.ParkBucket.model_validate(
                {
                    **_times(window, start, now),
                    "turbines_reporting": row["turbines_reporting"],
                    "n": row["n"],
                    "park_mean_power_kw": row["park_mean_power_kw"],
                    "park_total_power_kw": row["park_total_power_kw"],
                    "wind_speed_avg_ms": row["wind_speed_avg_ms"],
                    "temperature_avg_c": row["temperature_avg_c"],
                    "availability": row["availability"],
                    # Each turbine's energy is its mean power x the elapsed hours, so the
                    # park's is the sum of the means x the same hours.
                    "energy_kwh": row["park_total_power_kw"]
                    * _elapsed_h(start, window.bucket_end(start), now),
                    "turbines": turbines,
                }
            )
        )
    return schemas.ParkAggregates.model_validate({**_header(window, now), "buckets": buckets})


async def turbine_aggregates(
    conn: Connection, window: Window, *, now: datetime, turbine_id: str
) -> schemas.TurbineAggregates:
    rows = await queries.fetch_turbine_buckets(conn, window, turbine_id)
    buckets = []
    for row in rows:
        start = row["bucket"]
        hours = _elapsed_h(start, window.bucket_end(start), now)
        buckets.append(
            schemas.TurbineBucket.model_validate(
                {**_times(window, start, now), **_turbine_stats(row, hours)}
            )
        )
    return schemas.TurbineAggregates.model_validate(
        {**_header(window, now), "turbine_id": turbine_id, "buckets": buckets}
    )
