"""The aggregate answers, shared by the seed routes (/agregados/) and /v1.

Everything here reads the rollup tables through ``queries``; the window (which
buckets, which table, which zone) comes from ``buckets.resolve_window``.

Answers are plain dicts in the shape of ``schemas.ParkAggregates`` and
``schemas.TurbineAggregates``, serialized once by ``answer_json``. A year of hours
is 8 760 buckets: validating them into pydantic models, then letting FastAPI dump
the models, validate the dump again and serialize it, took most of such a request's
time (bench/bench_aggregates.py, p50 over HTTP: 357 ms before, 135 ms after this
change alone). The models stay the
documented contract (OpenAPI), and the tests validate answers against them.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import asyncpg
import orjson
from fastapi.responses import Response

from services.aggregator import queries
from services.aggregator.buckets import BucketSize, Window, floor_day, floor_fixed
from windpark.db import Connection

Answer = dict[str, Any]

_HOUR_S: Final = 3600.0
# RFC 3339 as pydantic writes it: "Z" for UTC, the offset otherwise.
_JSON_OPTIONS: Final = orjson.OPT_UTC_Z


def answer_json(answer: Answer) -> Response:
    """The answer as the HTTP response, serialized here (FastAPI passes a Response on)."""
    return Response(orjson.dumps(answer, option=_JSON_OPTIONS), media_type="application/json")


class _Clock:
    """Per window: where each bucket ends, how many of its hours have passed at ``now``,
    and how its instants are written (with the caller's local offset).

    Called once per bucket of answers that hold thousands: the common case (a bucket of
    fixed width that has ended) costs an addition and a comparison.
    """

    def __init__(self, window: Window, now: datetime) -> None:
        self.window = window
        self.now = now
        self._width = None if window.size is BucketSize.DAY else window.size.nominal
        self._width_h = window.size.nominal.total_seconds() / _HOUR_S
        zone = window.zone
        # asyncpg's instants are already UTC: written as they are, with "Z".
        self.label: Callable[[datetime], datetime] = (
            (lambda t: t) if zone.key == "UTC" else (lambda t: t.astimezone(zone))
        )

    def end(self, start: datetime) -> datetime:
        return start + self._width if self._width is not None else self.window.bucket_end(start)

    def elapsed_h(self, start: datetime, end: datetime) -> float:
        """Hours of the bucket that have passed: all of it, or up to now while partial."""
        if end <= self.now and self._width is not None:
            return self._width_h
        covered = min(end, self.now) - start
        return max(covered, timedelta(0)).total_seconds() / _HOUR_S

    def times(self, start: datetime, end: datetime) -> Answer:
        return {
            "bucket_start": self.label(start),
            "bucket_end": self.label(end),
            "duration_s": (end - start).total_seconds(),
            "partial": end > self.now,
        }


def _turbine_stats(row: asyncpg.Record, hours: float) -> Answer:
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
        # Measured: each reading's power over the time it held (windpark.rollups), never
        # the mean stretched over the bucket; the time covered says how much was seen.
        "energy_kwh": row["energy_kwh"],
        "covered_s": row["covered_s"],
        "coverage": _coverage(row["covered_s"], hours),
    }


def _coverage(covered_s: float, hours: float, series: int = 1) -> float | None:
    """The share of the bucket's elapsed time (for ``series`` turbines) that readings
    cover. At most 1: a hold counts whole in its reading's bucket, so one that ends past
    the bucket's end may add up to a hold's worth."""
    span_s = hours * _HOUR_S * series
    return min(covered_s / span_s, 1.0) if span_s > 0 else None


def _header(clock: _Clock) -> Answer:
    window = clock.window
    return {
        "bucket": window.size.value,
        "tz": window.tz_name,
        "window_start": window.label(window.start),
        "window_end": window.label(window.end),
        "generated_at": window.label(clock.now),
        "complete_until": window.label(_complete_until(window, clock.now)),
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
) -> Answer:
    """A ``schemas.ParkAggregates``: the park series, with each turbine's when asked."""
    clock = _Clock(window, now.astimezone(UTC))
    turbine_rows: list[asyncpg.Record] = []
    # Park coverage is over every registered turbine: one that sent nothing is a gap.
    series = 1 if turbine_id is not None else await queries.count_turbines(conn)
    if per_turbine:
        # Both from the turbine rows, in one snapshot: each bucket's park numbers are
        # those of the turbines listed with it, even while the concentrator writes.
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            park_rows = await queries.fetch_park_buckets(conn, window, turbine_id)
            turbine_rows = await queries.fetch_turbine_buckets(conn, window, turbine_id)
    elif turbine_id is None and window.park_table is not None:
        # The park series alone, over windows of up to the points cap in buckets (a
        # year of hours): one park-rollup row per bucket instead of one per turbine.
        park_rows = await queries.fetch_park_rollup(conn, window)
    else:
        # One turbine's series, or local days (whose park total, a sum of the turbines'
        # means over the day, the park rollup's hours cannot give).
        park_rows = await queries.fetch_park_buckets(conn, window, turbine_id)
    per_bucket: dict[datetime, list[Answer]] = defaultdict(list)
    for row in turbine_rows:
        start = row["bucket"]
        stats = _turbine_stats(row, clock.elapsed_h(start, clock.end(start)))
        per_bucket[start].append({"turbine_id": row["turbine_id"], **stats})
    label, now = clock.label, clock.now
    buckets = []
    # Unpacked in the order of queries.PARK_BUCKET_COLUMNS: a year of hours is 8 760
    # rows, and this loop is most of the request's own time. It writes _Clock.times'
    # four keys itself: one dict literal per bucket took 9.0 ms for a year, merging
    # times()' dict into it 13.9 ms (min of 15, this machine).
    for (
        start,
        reporting,
        n,
        mean_kw,
        total_kw,
        wind_ms,
        temp_c,
        availability,
        energy_kwh,
        covered_s,
    ) in park_rows:
        end = clock.end(start)
        buckets.append(
            {
                "bucket_start": label(start),
                "bucket_end": label(end),
                "duration_s": (end - start).total_seconds(),
                "partial": end > now,
                "turbines_reporting": reporting,
                "n": n,
                "park_mean_power_kw": mean_kw,
                "park_total_power_kw": total_kw,
                "wind_speed_avg_ms": wind_ms,
                "temperature_avg_c": temp_c,
                "availability": availability,
                "energy_kwh": energy_kwh,
                "covered_s": covered_s,
                "coverage": _coverage(covered_s, clock.elapsed_h(start, end), series),
                # (Hashing an aware datetime is not free: skipped when nothing is there.)
                "turbines": per_bucket.get(start, []) if per_bucket else [],
            }
        )
    return {**_header(clock), "buckets": buckets}


async def turbine_aggregates(
    conn: Connection, window: Window, *, now: datetime, turbine_id: str
) -> Answer:
    """A ``schemas.TurbineAggregates``: one turbine's series."""
    clock = _Clock(window, now.astimezone(UTC))
    rows = await queries.fetch_turbine_buckets(conn, window, turbine_id)
    buckets = []
    for row in rows:
        start = row["bucket"]
        end = clock.end(start)
        buckets.append(
            {**clock.times(start, end), **_turbine_stats(row, clock.elapsed_h(start, end))}
        )
    return {**_header(clock), "turbine_id": turbine_id, "buckets": buckets}
