"""The advisory locks of park rows (windpark.rollups.park_lock_days): one per UTC day,
which holds every park bucket of every level."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from windpark.rollups import park_lock_days


def test_one_lock_per_utc_day_sorted() -> None:
    t = datetime(2026, 3, 29, 23, 59, 10, tzinfo=UTC)
    assert park_lock_days([t, t + timedelta(seconds=20)]) == [20541]
    # Across midnight: the next day too, in order whatever the order of the readings.
    days = park_lock_days([t + timedelta(minutes=5), t, t - timedelta(days=3)])
    assert days == [20538, 20541, 20542]


def test_days_fit_postgres_int4() -> None:
    far = datetime(9999, 12, 31, tzinfo=UTC)
    [day] = park_lock_days([far])
    assert 0 < day < 2**31


def test_a_week_of_backlog_takes_eight_locks() -> None:
    """The validator accepts readings up to 7 days old (and 30 s early): a batch takes
    8 day locks, 9 across a midnight, however many readings it holds."""
    now = datetime(2026, 11, 30, 6, tzinfo=UTC)
    backlog = [now - timedelta(seconds=10 * i) for i in range(7 * 8640)]
    assert len(park_lock_days(backlog)) == 8
