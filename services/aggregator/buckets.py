"""Aggregate windows: which buckets a request covers, in which time zone, from which table.

Pure functions (no I/O), so the calendar arithmetic is tested without a database.

Rules, written once here and in ``docs/api.md``:

- A bucket belongs to a request when its *start* lies in ``[from, to)``.
- 1m, 10m and 1h buckets are aligned to UTC (to the Unix epoch) and read from their
  own rollup table (the park series alone from ``park_rollup_<size>``); the time zone only
  changes how their starts are written.
- 1d buckets are local calendar days in the requested zone: 23 h or 25 h long on DST
  days. In UTC they come from ``rollup_1d`` and ``park_rollup_1d``; elsewhere they are
  summed from the finest per-turbine table whose buckets never straddle a local
  midnight (``rollup_1h`` for whole-hour offsets, ``rollup_10m`` for :30 offsets,
  ``rollup_1m`` otherwise).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from functools import cache
from typing import Final
from zoneinfo import ZoneInfo, available_timezones

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_DAY: Final = timedelta(days=1)


class BucketSize(StrEnum):
    MINUTE = "1m"
    TEN_MINUTES = "10m"
    HOUR = "1h"
    DAY = "1d"

    @property
    def nominal(self) -> timedelta:
        return _NOMINAL[self]

    @property
    def table(self) -> str:
        return f"rollup_{self.value}"


_NOMINAL: Final = {
    BucketSize.MINUTE: timedelta(minutes=1),
    BucketSize.TEN_MINUTES: timedelta(minutes=10),
    BucketSize.HOUR: timedelta(hours=1),
    BucketSize.DAY: _DAY,
}
ORDERED_SIZES: Final = tuple(BucketSize)

# Window when the caller gives no `from`: this many buckets up to now (the current,
# partial one included), shortened when it would pass the points cap.
DEFAULT_BUCKETS: Final = {
    BucketSize.MINUTE: 60,  # the last hour
    BucketSize.TEN_MINUTES: 144,  # the last day
    BucketSize.HOUR: 168,  # the last week
    BucketSize.DAY: 31,  # the last month
}


class WindowError(ValueError):
    """A request for a window that cannot be served; ``param`` names the culprit."""

    def __init__(self, param: str, message: str, kind: str) -> None:
        super().__init__(message)
        self.param = param
        self.message = message
        self.kind = kind


@cache
def _known_zones() -> frozenset[str]:
    return frozenset(available_timezones())


def parse_zone(name: str) -> ZoneInfo:
    """An IANA zone by name; only names in the zone database (no paths, no POSIX strings)."""
    if name == "UTC":
        return ZoneInfo("UTC")
    if name not in _known_zones():
        raise WindowError("tz", f"unknown time zone {name!r}: use an IANA name", "unknown_tz")
    return ZoneInfo(name)


def floor_fixed(t: datetime, width: timedelta) -> datetime:
    """Start of the epoch-aligned bucket holding t (what ``time_bucket`` computes)."""
    return _EPOCH + ((t - _EPOCH) // width) * width


def ceil_fixed(t: datetime, width: timedelta) -> datetime:
    start = floor_fixed(t, width)
    return start if start == t else start + width


def local_midnight(day: date, zone: ZoneInfo) -> datetime:
    # fold=0 reads a midnight that a DST jump skips with the offset in force before the
    # jump, as PostgreSQL (and so time_bucket with a zone) does.
    return datetime.combine(day, time(0), tzinfo=zone).astimezone(UTC)


def floor_day(t: datetime, zone: ZoneInfo) -> datetime:
    start = local_midnight(t.astimezone(zone).date(), zone)
    # Where a skipped midnight lands after t (local day starting at 01:00), t belongs
    # to the day before.
    if start > t:
        start = local_midnight(t.astimezone(zone).date() - _DAY, zone)
    return start


def next_day(start: datetime, zone: ZoneInfo) -> datetime:
    """Start of the local day after the one that starts at ``start``."""
    # 36 h from any day start lands inside the next day (days last 23 to 25 h).
    return floor_day(start + timedelta(hours=36), zone)


def ceil_day(t: datetime, zone: ZoneInfo) -> datetime:
    start = floor_day(t, zone)
    return start if start == t else next_day(start, zone)


@dataclass(frozen=True, slots=True)
class Window:
    size: BucketSize
    zone: ZoneInfo
    start: datetime  # first bucket start, UTC
    end: datetime  # end of the last bucket, UTC (past `to` when `to` is inside a bucket)
    bucket_count: int
    # The rollup table read, and whether its rows are summed into local days.
    table: str
    by_local_day: bool

    @property
    def park_table(self) -> str | None:
        """The park rollup of the same buckets, when there is one: not for local days,
        whose park total (a sum of turbine means over the day) hours cannot give."""
        return None if self.by_local_day else f"park_{self.table}"

    @property
    def tz_name(self) -> str:
        return self.zone.key

    def bucket_end(self, start: datetime) -> datetime:
        if self.size is BucketSize.DAY:
            return next_day(start, self.zone)
        return start + self.size.nominal

    def label(self, t: datetime) -> datetime:
        """A UTC instant written with the caller's local offset."""
        return t.astimezone(self.zone)


def resolve_window(
    size: BucketSize,
    zone: ZoneInfo,
    *,
    start: datetime | None,
    end: datetime | None,
    now: datetime,
    turbines: int,
    max_points: int,
    size_names: Mapping[BucketSize, str] | None = None,
    breakdown_param: str | None = None,
) -> Window:
    """The buckets whose start is in [start, end), with defaults and the points cap applied.

    ``turbines`` is how many series the answer holds (1 for a single turbine);
    ``size_names`` spells the bucket sizes as the caller's parameter does, for messages;
    ``breakdown_param`` names the parameter that drops the per-turbine series, when
    the caller has one (the cap message then offers it).
    """
    try:
        return _resolve(
            size,
            zone,
            start=start,
            end=end,
            now=now,
            series=max(turbines, 1),
            max_points=max_points,
            size_names=size_names,
            breakdown_param=breakdown_param,
        )
    except OverflowError as exc:  # a date near year 1 or 9999
        raise WindowError(
            "from", "the window lies outside the supported dates", "out_of_range"
        ) from exc


def _resolve(
    size: BucketSize,
    zone: ZoneInfo,
    *,
    start: datetime | None,
    end: datetime | None,
    now: datetime,
    series: int,
    max_points: int,
    size_names: Mapping[BucketSize, str] | None,
    breakdown_param: str | None,
) -> Window:
    if start is None:
        upper = end or now
        count = max(1, min(DEFAULT_BUCKETS[size], max_points // series))
        if end is None:
            # Up to now, the current (partial) bucket included.
            first = _floor(size, zone, now)
            for _ in range(count - 1):
                first = _previous(size, zone, first)
            start = first
        else:
            start = _rewind(size, zone, upper, count)
        end = upper
    elif end is None:
        end = now
    if start >= end:
        raise WindowError("to", "`to` (default: now) must be later than `from`", "window_order")

    nominal_count = math.ceil((end - start) / size.nominal)
    if nominal_count * series > max_points:
        raise WindowError(
            "bucket",
            _cap_message(
                size,
                nominal_count,
                series,
                max_points,
                size_names=size_names,
                breakdown_param=breakdown_param,
            ),
            "points_cap",
        )

    first = _ceil(size, zone, start)
    last_end = _ceil(size, zone, end)
    if size is BucketSize.DAY:
        count = 0
        cursor = first
        while cursor < last_end:
            count += 1
            cursor = next_day(cursor, zone)
    else:
        count = (last_end - first) // size.nominal
    table, by_local_day = _source(size, zone, first, last_end)
    return Window(size, zone, first, last_end, count, table, by_local_day)


def _floor(size: BucketSize, zone: ZoneInfo, t: datetime) -> datetime:
    return floor_day(t, zone) if size is BucketSize.DAY else floor_fixed(t, size.nominal)


def _ceil(size: BucketSize, zone: ZoneInfo, t: datetime) -> datetime:
    return ceil_day(t, zone) if size is BucketSize.DAY else ceil_fixed(t, size.nominal)


def _previous(size: BucketSize, zone: ZoneInfo, bucket_start: datetime) -> datetime:
    if size is BucketSize.DAY:
        return floor_day(bucket_start - timedelta(seconds=1), zone)
    return bucket_start - size.nominal


def _rewind(size: BucketSize, zone: ZoneInfo, end: datetime, count: int) -> datetime:
    """A start such that [start, end) holds ``count`` bucket starts."""
    t = _ceil(size, zone, end)
    for _ in range(count):
        t = _previous(size, zone, t)
    return t


def _source(size: BucketSize, zone: ZoneInfo, start: datetime, end: datetime) -> tuple[str, bool]:
    if size is not BucketSize.DAY:
        return size.table, False
    offsets = {_offset_s(start, zone), _offset_s(end, zone)}
    cursor = start
    while cursor < end:  # one look a day catches every offset the window uses
        offsets.add(_offset_s(cursor, zone))
        cursor += _DAY
    if offsets == {0}:
        return BucketSize.DAY.table, False
    for finer in (BucketSize.HOUR, BucketSize.TEN_MINUTES):
        step = int(finer.nominal.total_seconds())
        if all(o % step == 0 for o in offsets):
            return finer.table, True
    return BucketSize.MINUTE.table, True


def _offset_s(t: datetime, zone: ZoneInfo) -> int:
    offset = t.astimezone(zone).utcoffset()
    return int(offset.total_seconds()) if offset is not None else 0


def _cap_message(
    size: BucketSize,
    buckets: int,
    series: int,
    max_points: int,
    *,
    size_names: Mapping[BucketSize, str] | None,
    breakdown_param: str | None = None,
) -> str:
    names = size_names or {s: s.value for s in BucketSize}
    asked = buckets * series
    detail = f"{buckets} buckets of {names[size]}" + (f" x {series} turbines" if series > 1 else "")
    coarser = [
        s
        for s in ORDERED_SIZES[ORDERED_SIZES.index(size) + 1 :]
        if math.ceil(buckets * size.nominal / s.nominal) * series <= max_points
    ]
    advice = (
        f"use a coarser bucket ({names[coarser[0]]}) or a shorter window"
        if coarser
        else "use a shorter window"
    )
    if breakdown_param is not None and series > 1 and buckets <= max_points:
        advice += f", or {breakdown_param}=false for the park series alone"
    return f"the request asks for {asked} points ({detail}), over the cap of {max_points}; {advice}"
