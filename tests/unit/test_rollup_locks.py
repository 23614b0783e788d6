"""The advisory-lock keys of park buckets (windpark.rollups.park_lock_keys)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from windpark.rollups import LEVELS, park_lock_keys


def test_one_key_per_level_and_bucket_sorted() -> None:
    t = datetime(2026, 3, 29, 0, 59, 10, tzinfo=UTC)
    keys = park_lock_keys([t, t + timedelta(seconds=20)])  # one minute, one of each level
    assert len(keys) == len(LEVELS)
    assert keys == sorted(keys)
    # Into the next minute and the next hour (and the next 10 minutes): three more keys.
    keys = park_lock_keys([t, t + timedelta(seconds=60)])
    assert len(keys) == len(LEVELS) + 3
    assert keys == sorted(keys)
    assert len(set(keys)) == len(keys)


def test_keys_fit_postgres_int4() -> None:
    far = datetime(2200, 1, 1, tzinfo=UTC)
    for space, bucket in park_lock_keys([far]):
        assert -(2**31) <= space < 2**31
        assert -(2**31) <= bucket < 2**31


def test_order_of_timestamps_does_not_change_keys() -> None:
    ts = [datetime(2026, 1, 1, tzinfo=UTC) + timedelta(minutes=m) for m in (70, 3, 45, 3)]
    assert park_lock_keys(ts) == park_lock_keys(reversed(ts))
