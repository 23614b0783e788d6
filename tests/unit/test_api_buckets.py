"""Aggregate windows and query parameters of the API, without servers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from services.aggregator.buckets import (
    BucketSize,
    Window,
    WindowError,
    ceil_day,
    floor_day,
    floor_fixed,
    next_day,
    parse_zone,
    resolve_window,
)
from services.aggregator.params import parse_instant
from services.aggregator.queries import decode_cursor, encode_cursor

MADRID = ZoneInfo("Europe/Madrid")
UTC_ZONE = ZoneInfo("UTC")
NOW = datetime(2026, 11, 28, 18, 32, 17, tzinfo=UTC)


def window(
    size: BucketSize,
    zone: ZoneInfo = UTC_ZONE,
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    turbines: int = 10,
) -> Window:
    return resolve_window(
        size, zone, start=start, end=end, now=NOW, turbines=turbines, max_points=10_000
    )


@pytest.mark.parametrize(
    ("day", "hours"),
    [
        (datetime(2026, 3, 29), 23),
        (datetime(2026, 10, 25), 25),
        (datetime(2026, 3, 28), 24),
        (datetime(2026, 3, 30), 24),
    ],
)
def test_madrid_days_last_23_or_25_hours_on_dst_days(day: datetime, hours: int) -> None:
    start = day.replace(tzinfo=MADRID).astimezone(UTC)
    assert next_day(start, MADRID) - start == timedelta(hours=hours)
    assert floor_day(start + timedelta(hours=hours - 0.5), MADRID) == start
    assert ceil_day(start + timedelta(seconds=1), MADRID) == start + timedelta(hours=hours)


def test_day_window_counts_local_days_and_reads_hours() -> None:
    w = window(
        BucketSize.DAY,
        MADRID,
        start=datetime(2026, 3, 28, tzinfo=MADRID),
        end=datetime(2026, 3, 31, tzinfo=MADRID),
    )
    assert w.bucket_count == 3
    assert (w.table, w.by_local_day) == ("rollup_1h", True)
    assert w.end - w.start == timedelta(hours=71)
    assert w.label(w.start).isoformat() == "2026-03-28T00:00:00+01:00"


@pytest.mark.parametrize(
    ("zone", "table", "by_local_day"),
    [
        ("UTC", "rollup_1d", False),
        ("Etc/GMT-3", "rollup_1h", True),
        ("Europe/Madrid", "rollup_1h", True),
        ("Asia/Kolkata", "rollup_10m", True),  # +05:30
        ("Asia/Kathmandu", "rollup_1m", True),  # +05:45
    ],
)
def test_local_days_come_from_the_finest_table_needed(
    zone: str, table: str, by_local_day: bool
) -> None:
    w = window(BucketSize.DAY, parse_zone(zone))
    assert (w.table, w.by_local_day) == (table, by_local_day)


@pytest.mark.parametrize("size", list(BucketSize))
def test_default_window_ends_with_the_current_bucket(size: BucketSize) -> None:
    w = window(size)
    current = floor_day(NOW, UTC_ZONE) if size is BucketSize.DAY else floor_fixed(NOW, size.nominal)
    assert w.start < NOW < w.end
    assert w.end == w.bucket_end(current)
    assert w.bucket_count == {"1m": 60, "10m": 144, "1h": 168, "1d": 31}[size.value]


def test_default_window_shrinks_to_the_points_cap() -> None:
    w = window(BucketSize.HOUR, turbines=500)
    assert w.bucket_count == 10_000 // 500
    assert w.bucket_count * 500 <= 10_000


def test_explicit_window_includes_buckets_starting_inside_it() -> None:
    w = window(
        BucketSize.TEN_MINUTES,
        start=datetime(2026, 1, 1, 10, 5, tzinfo=UTC),
        end=datetime(2026, 1, 1, 10, 35, tzinfo=UTC),
    )
    # Starts 10:10, 10:20, 10:30; the last one ends after `to`.
    assert (w.start, w.end, w.bucket_count) == (
        datetime(2026, 1, 1, 10, 10, tzinfo=UTC),
        datetime(2026, 1, 1, 10, 40, tzinfo=UTC),
        3,
    )


def test_points_cap_suggests_the_next_bucket_that_fits() -> None:
    with pytest.raises(WindowError) as caught:
        window(
            BucketSize.MINUTE,
            start=datetime(2026, 1, 1, tzinfo=UTC),
            end=datetime(2026, 1, 2, tzinfo=UTC),
            turbines=10,
        )
    assert caught.value.kind == "points_cap"
    assert "14400 points" in caught.value.message
    # 144 buckets of 10m x 10 turbines fit: the suggestion is the next size that fits.
    assert "(10m)" in caught.value.message


def test_window_must_not_be_empty() -> None:
    with pytest.raises(WindowError) as caught:
        window(BucketSize.HOUR, start=NOW, end=NOW)
    assert caught.value.param == "to"


@pytest.mark.parametrize(
    ("start", "end"),
    [
        (datetime(1, 1, 1, tzinfo=UTC), datetime(1, 1, 3, tzinfo=UTC)),
        (datetime(9999, 12, 30, tzinfo=UTC), datetime(9999, 12, 31, 23, tzinfo=UTC)),
    ],
)
def test_dates_at_the_ends_of_the_calendar_are_refused(start: datetime, end: datetime) -> None:
    with pytest.raises(WindowError) as caught:
        window(BucketSize.DAY, ZoneInfo("America/New_York"), start=start, end=end)
    assert caught.value.kind == "out_of_range"


@pytest.mark.parametrize("name", ["Mars/Base", "../etc/passwd", "/etc/localtime", ""])
def test_unknown_zones_are_refused(name: str) -> None:
    with pytest.raises(WindowError):
        parse_zone(name)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-03-29T00:00:00+01:00", datetime(2026, 3, 28, 23, tzinfo=UTC)),
        ("2026-03-29T00:00:00Z", datetime(2026, 3, 29, tzinfo=UTC)),
        ("2026-03-29t00:00:00z", datetime(2026, 3, 29, tzinfo=UTC)),
        ("2026-03-29T00:00:00 01:00", datetime(2026, 3, 28, 23, tzinfo=UTC)),
        ("2026-03-29T00:00:00.123456789-02:00", datetime(2026, 3, 29, 2, 0, 0, 123456, tzinfo=UTC)),
    ],
)
def test_instants_need_an_offset(text: str, expected: datetime) -> None:
    assert parse_instant(text) == expected


@pytest.mark.parametrize(
    "text", ["2026-03-29T00:00:00", "2026-03-29", "1774742400", "2026-02-30T00:00:00Z", "now"]
)
def test_other_forms_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match=r"."):
        parse_instant(text)


def test_cursor_round_trips_and_refuses_forgeries() -> None:
    ts = datetime(2026, 4, 2, 8, 0, 7, 250000, tzinfo=UTC)
    assert decode_cursor(encode_cursor(ts)) == ts
    for bad in ("!!", "bm90IGEgZGF0ZQ", encode_cursor(ts.replace(tzinfo=None))):
        with pytest.raises(ValueError, match="invalid cursor"):
            decode_cursor(bad)
