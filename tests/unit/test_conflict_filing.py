"""Duplicate or conflict, decided without a database; and one source prefix per dedup key."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

from services.concentrator.ingest import Inbound, dedup_key
from tests.factories import accepted, make_reading
from windpark.storage import classify_not_inserted

TS = datetime(2026, 5, 1, 12, tzinfo=UTC)


def inbound(message_id: str | None) -> Inbound:
    return Inbound(body=b"{}", routing_key="telemetry.WTG01", message_id=message_id, received_at=TS)


def test_an_http_message_id_is_its_dedup_key_with_one_prefix() -> None:
    assert dedup_key(inbound("http:0b7c")) == "http:0b7c"
    assert dedup_key(inbound("WTG01:42:0")) == "amqp:WTG01:42:0"
    assert dedup_key(inbound(None)).startswith("amqp:telemetry.WTG01:sha256:")


def test_flags_do_not_make_a_conflict_values_do() -> None:
    stored = make_reading(ts=TS, seq=1)
    key = (stored.turbine_id, TS)
    values = (1, stored.power_kw, stored.wind_speed_ms, stored.temperature_c, "running")
    stored_values = (*values, None, None, None, None, None)
    flagged_again = replace(accepted(stored, key="again"), quality_flags=16)
    other = accepted(stored.model_copy(update={"power_kw": stored.power_kw + 1}), key="other")
    filing = classify_not_inserted([flagged_again, other], set(), {key: stored_values}, {})
    assert filing.duplicates == [flagged_again]
    assert filing.conflicts == [(other, ["power_kw"])]


def test_the_inserted_reading_is_found_by_its_values_wherever_it_is_in_the_batch() -> None:
    first = make_reading(ts=TS, seq=1)
    second = first.model_copy(update={"seq": 2})
    key = (first.turbine_id, TS)
    stored_values = (2, first.power_kw, first.wind_speed_ms, first.temperature_c, "running")
    # The database kept the second of the two: the first is then the conflict.
    filing = classify_not_inserted(
        [accepted(first, key="a"), accepted(second, key="b")],
        {key},
        {key: (*stored_values, None, None, None, None, None)},
        {},
    )
    assert [item.dedup_key for item, _ in filing.conflicts] == ["a"]
    assert filing.duplicates == []
