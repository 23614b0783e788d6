"""The wire contract: names, routing keys and the reading's encoding."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import orjson
import pytest
from pydantic import ValidationError

from tests.factories import make_payload, make_reading
from windpark import contract
from windpark.contract import Reading


def test_routing_key_and_mqtt_topic_name_the_same_turbine() -> None:
    assert contract.routing_key("WTG07") == "telemetry.WTG07"
    # RabbitMQ's MQTT plugin maps "/" to ".", so both transports meet on one key.
    assert contract.mqtt_topic("WTG07").replace("/", ".") == contract.routing_key("WTG07")
    assert contract.turbine_from_routing_key("telemetry.WTG07") == "WTG07"
    assert contract.turbine_from_routing_key("telemetry.a.b") is None
    assert contract.turbine_from_routing_key("other.WTG07") is None


def test_queue_arguments_give_at_least_once_dead_lettering() -> None:
    args = contract.QUEUE_ARGUMENTS
    assert args["x-queue-type"] == "quorum"
    assert args["x-dead-letter-strategy"] == "at-least-once"
    # Without reject-publish RabbitMQ silently falls back to at-most-once.
    assert args["x-overflow"] == "reject-publish"
    assert args["x-delivery-limit"] > 0
    assert args["x-dead-letter-exchange"] == contract.DEAD_LETTER_EXCHANGE


def test_encode_round_trips_and_writes_utc_with_offset() -> None:
    reading = make_reading(
        ts=datetime(2026, 5, 1, 12, 0, 0, 250000, tzinfo=timezone(timedelta(hours=2)))
    )
    wire = orjson.loads(contract.encode(reading))
    assert wire["ts"] == "2026-05-01T10:00:00.250Z"
    assert wire["v"] == 1
    assert "rotor_rpm" not in wire  # optional channels are omitted, not null
    assert Reading.model_validate_json(contract.encode(reading)) == reading


def test_reading_is_strict_about_types_and_offsets() -> None:
    with pytest.raises(ValidationError):
        Reading.model_validate_json(make_payload(power_kw="12.5"))
    with pytest.raises(ValidationError):
        Reading.model_validate_json(make_payload(ts="2026-05-01T10:00:00"))
    with pytest.raises(ValidationError):
        Reading.model_validate_json(make_payload(extra_field=1))
    with pytest.raises(ValidationError):
        Reading.model_validate_json(make_payload(v=2))
    with pytest.raises(ValidationError):
        Reading.model_validate_json(make_payload(turbine_id="a.b"))


def test_format_ts_refuses_naive_datetimes() -> None:
    with pytest.raises(ValueError, match="naive"):
        contract.format_ts(datetime(2026, 1, 1))
    assert contract.format_ts(datetime(2026, 1, 1, tzinfo=UTC)) == "2026-01-01T00:00:00.000Z"
