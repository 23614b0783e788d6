"""Reconciling what generators published with the database's ledgers (no I/O)."""

from __future__ import annotations

from collections import Counter

from windpark.accounting import Ledger, reconcile
from windpark.validation import QualityFlag

COPY = {"turbine_id": "WTG01", "seq": 1, "kind": "duplicate", "expected": "duplicate"}
REJECT = {"turbine_id": "WTG01", "seq": 2, "kind": "negative_power", "expected": "rejected"}


def ledger(**overrides: object) -> Ledger:
    """WTG01 published seq 0..3: 0, 1, 3 stored, 2 rejected, one copy of 1 absorbed."""
    fields: dict[str, object] = {
        "stored_flags": {0: 0, 1: 0, 3: int(QualityFlag.SEQ_GAP)},
        "rejected": Counter({2: 1}),
        "duplicates": Counter({1: 1}),
    }
    fields.update(overrides)
    return Ledger(**fields)  # type: ignore[arg-type]


def test_a_complete_ledger_has_no_problems() -> None:
    report = reconcile({"WTG01": ledger()}, [COPY, REJECT], 4)
    assert report.problems == []
    assert (report.published_messages, report.db_rows, report.redeliveries) == (5, 5, 0)
    assert report.count("duplicate", "duplicate") == report.expected_copies == 1
    assert report.count("rejected", "rejected") == 1


def test_a_missing_reading_is_named_with_its_turbine_seq_and_ledgers() -> None:
    report = reconcile({"WTG01": ledger(stored_flags={0: 0, 1: 0})}, [COPY, REJECT], 4)
    assert report.missing == {"WTG01": [3]}
    assert report.problems == [
        "WTG01 seq 3: published (accepted) but in neither readings nor rejected_readings"
    ]


def test_a_lost_copy_is_named_and_not_counted() -> None:
    report = reconcile({"WTG01": ledger(duplicates=Counter())}, [COPY, REJECT], 4)
    assert report.problems == ["WTG01 seq 1: 1 copies published, 0 in duplicate_readings"]
    assert report.count("duplicate", "duplicate") == 0


def test_a_redelivery_is_counted_apart_from_copies() -> None:
    report = reconcile({"WTG01": ledger(duplicates=Counter({1: 2, 3: 1}))}, [COPY, REJECT], 4)
    assert report.problems == []
    assert report.redeliveries == 2
    assert report.count("duplicate", "duplicate") == 1
    assert report.db_rows == report.published_messages + report.redeliveries


def test_a_duplicate_row_of_a_reading_stored_nowhere_is_a_problem() -> None:
    report = reconcile(
        {"WTG01": ledger(stored_flags={0: 0, 1: 0}, duplicates=Counter({1: 1, 3: 1}))},
        [COPY, REJECT],
        4,
    )
    assert "WTG01 seq 3: in duplicate_readings but in neither readings nor rejected_readings" in (
        report.problems
    )
