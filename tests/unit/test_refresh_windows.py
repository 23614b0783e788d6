"""The refresh windows of the continuous aggregates (community license), computed by one
pure function: each level's window lies on that level's bucket boundaries (as
``time_bucket`` in migrations 0002 and 0005 draws them: UTC, default origin), covers
every bucket that overlaps the rebuilt range at every level, and stops at the level's
current bucket, which real-time aggregation serves."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from windpark.rollups import LEVELS, continuous_views, floor_bucket, refresh_windows, stale_span

DAY = timedelta(days=1)
ZONES = [
    UTC,
    ZoneInfo("Europe/Madrid"),  # DST: 2026-03-29 02:00 -> 03:00, 2026-10-25 03:00 -> 02:00
    ZoneInfo("America/New_York"),
    ZoneInfo("Australia/Lord_Howe"),  # a 30-minute DST shift
    timezone(timedelta(hours=5, minutes=45)),  # Nepal: not a whole hour
    timezone(timedelta(hours=-9, minutes=-30)),
]
NOW = datetime(2026, 12, 2, 13, 37, 21, 123456, tzinfo=UTC)


def _aligned(t: datetime, seconds: int) -> bool:
    return t.tzinfo is not None and t.timestamp() % seconds == 0


def test_floor_bucket_is_time_bucket_on_utc_boundaries() -> None:
    t = datetime(2026, 3, 29, 3, 17, 42, 5, tzinfo=ZoneInfo("Europe/Madrid"))  # 01:17:42Z
    assert floor_bucket(t, timedelta(minutes=1)) == datetime(2026, 3, 29, 1, 17, tzinfo=UTC)
    assert floor_bucket(t, timedelta(minutes=10)) == datetime(2026, 3, 29, 1, 10, tzinfo=UTC)
    assert floor_bucket(t, timedelta(hours=1)) == datetime(2026, 3, 29, 1, tzinfo=UTC)
    assert floor_bucket(t, DAY) == datetime(2026, 3, 29, tzinfo=UTC)
    # Before the epoch and before TimescaleDB's origin (2000-01-03) alike.
    old = datetime(1969, 12, 31, 23, 59, 59, tzinfo=UTC)
    assert floor_bucket(old, DAY) == datetime(1969, 12, 31, tzinfo=UTC)


def test_a_backfill_ending_mid_day_refreshes_that_whole_day_at_every_level() -> None:
    """The defect: the window [start, end) itself left out the day of ``end`` at 1d."""
    start = datetime(2026, 11, 20, 13, 37, 20, tzinfo=UTC)
    end = datetime(2026, 11, 27, 13, 37, 20, tzinfo=UTC)
    windows = refresh_windows(start, end, NOW)
    assert [level.name for level, _, _ in windows] == ["1m", "10m", "1h", "1d"]
    for _, lo, hi in windows:
        assert (lo, hi) == (datetime(2026, 11, 20, tzinfo=UTC), datetime(2026, 11, 28, tzinfo=UTC))


def test_a_range_shorter_than_a_day_still_gives_the_day_a_whole_bucket() -> None:
    """The defect: 4,000 s gave the 1d level a window holding no bucket ("refresh window
    too small")."""
    start = datetime(2026, 11, 30, 10, 0, 0, tzinfo=UTC)
    windows = refresh_windows(start, start + timedelta(seconds=4000), NOW)
    assert {(hi - lo) for _, lo, hi in windows} == {DAY}


def test_the_current_bucket_is_left_to_real_time_aggregation() -> None:
    start = NOW - timedelta(seconds=4000)
    windows = {level.name: (lo, hi) for level, lo, hi in refresh_windows(start, NOW, NOW)}
    assert "1d" not in windows  # today is the 1d level's current bucket
    assert windows["1m"] == (
        datetime(2026, 12, 2, tzinfo=UTC),
        datetime(2026, 12, 2, 13, 37, tzinfo=UTC),
    )
    assert windows["10m"][1] == datetime(2026, 12, 2, 13, 30, tzinfo=UTC)
    assert windows["1h"][1] == datetime(2026, 12, 2, 13, tzinfo=UTC)
    # Inside the current minute, the day so far (a coarser level reads the finer one).
    assert [(level.name, hi) for level, _, hi in refresh_windows(NOW, NOW + DAY, NOW)] == [
        ("1m", windows["1m"][1]),
        ("10m", windows["10m"][1]),
        ("1h", windows["1h"][1]),
    ]


@pytest.mark.parametrize("zone", ZONES, ids=str)
@pytest.mark.parametrize(
    ("start_local", "hours"),
    [
        (datetime(2026, 3, 29, 1, 30), 2.0),  # Madrid's spring-forward gap
        (datetime(2026, 10, 25, 2, 30), 1.0),  # Madrid's repeated hour
        (datetime(2026, 3, 8, 1, 59, 59), 0.01),  # New York's spring forward
        (datetime(2026, 4, 5, 1, 45), 0.5),  # Lord Howe's half-hour fall back
        (datetime(2026, 6, 30, 23, 59, 59, 999999), 24.0),
    ],
)
def test_windows_are_utc_buckets_whatever_the_zone_of_the_input(
    zone: timezone | ZoneInfo, start_local: datetime, hours: float
) -> None:
    start = start_local.replace(tzinfo=zone)
    end = start + timedelta(hours=hours)
    in_utc = refresh_windows(start.astimezone(UTC), end.astimezone(UTC), NOW)
    assert refresh_windows(start, end, NOW) == in_utc
    for level, lo, hi in in_utc:
        assert _aligned(lo, level.seconds)
        assert _aligned(hi, level.seconds)
        assert _aligned(lo, 86_400)


instants = st.datetimes(
    min_value=datetime(1999, 1, 1),
    max_value=datetime(2027, 1, 1),
    timezones=st.sampled_from(ZONES),
)


@given(start=instants, length_s=st.floats(min_value=1e-6, max_value=40 * 86400), now=instants)
def test_every_overlapping_bucket_up_to_the_current_one_is_refreshed(
    start: datetime, length_s: float, now: datetime
) -> None:
    end = start + max(timedelta(seconds=length_s), timedelta(microseconds=1))
    windows = {level.name: (lo, hi) for level, lo, hi in refresh_windows(start, end, now)}
    previous: tuple[datetime, datetime] | None = None
    for level in LEVELS:
        width = timedelta(seconds=level.seconds)
        current = floor_bucket(now, width)
        # Every bucket of this level that overlaps [start, end), before the current one.
        first = floor_bucket(start, width)
        last = min(floor_bucket(end - timedelta(microseconds=1), width), current - width)
        if level.name not in windows:
            assert first > last  # no such bucket: nothing left out
            continue
        lo, hi = windows[level.name]
        assert _aligned(lo, level.seconds)
        assert _aligned(hi, level.seconds)
        assert lo < hi <= current  # at least one bucket, never the current one
        assert lo <= first
        assert last + width <= hi
        # Never wider than the day-aligned range.
        assert lo == floor_bucket(start, DAY)
        assert hi - floor_bucket(end - timedelta(microseconds=1), DAY) <= DAY
        # A coarser level reads the finer one: the finer window covers the coarser one.
        if previous is not None:
            assert previous[0] <= lo
            assert hi <= previous[1]
        previous = (lo, hi)


def test_live_readings_are_not_stale_late_ones_are() -> None:
    """A reading whose bucket is already materialized at some level (before that
    aggregate's watermark) is stale there until refreshed; one in a bucket served by
    real-time aggregation is not. Aggregates never refreshed have no watermark."""
    watermarks = {view: NOW.replace(second=0, microsecond=0) for view in ("rollup_1m",)}
    watermarks |= {"rollup_1h": datetime(2026, 12, 2, 12, tzinfo=UTC)}
    live = [NOW - timedelta(seconds=5), NOW]
    assert stale_span(live, watermarks) is None  # the current minute and hour
    last_minute = NOW - timedelta(seconds=30)
    assert stale_span([last_minute, *live], watermarks) == (last_minute, last_minute)
    late = datetime(2026, 12, 2, 11, 59, 59, tzinfo=UTC)
    assert stale_span([late, NOW], watermarks) == (late, late)
    assert stale_span([NOW], {}) is None
    every_view = [v for level in LEVELS for v in continuous_views(level)]
    assert stale_span([NOW], dict.fromkeys(every_view, NOW + DAY)) == (NOW, NOW)
