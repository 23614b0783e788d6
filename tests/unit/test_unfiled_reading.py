"""A reading that the insert left out, with nothing kept under its key, is an error."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from tests.factories import accepted, make_reading
from windpark.storage import UnfiledReadingError, classify_not_inserted

TS = datetime(2026, 5, 1, 12, tzinfo=UTC)


def test_no_stored_row_and_no_kept_conflict_is_not_a_conflict() -> None:
    reading = make_reading(ts=TS, seq=1)
    with pytest.raises(UnfiledReadingError, match=reading.turbine_id):
        classify_not_inserted([accepted(reading, key="lost")], set(), {}, {})
