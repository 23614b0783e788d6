"""Every reject code through the real pipeline: a crafted message published to the broker
is consumed by the concentrator and found in rejected_readings with that code and its
exact bytes."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from aio_pika.abc import AbstractRobustConnection

from tests.conftest import new_turbine_id
from tests.integration.test_concentrator import (
    count,
    eventually,
    publish_all,
    running_concentrator,
)
from windpark import registry
from windpark.contract import MAX_MESSAGE_BYTES
from windpark.turbine_model import load_model
from windpark.validation import ReasonCode

RATED = load_model("E-82/2300").rated_power_kw
MISSING: Any = object()


def payload(turbine_id: str, **overrides: Any) -> bytes:
    now = datetime.now(UTC)
    fields: dict[str, Any] = {
        "v": 1,
        "turbine_id": turbine_id,
        "ts": (now - timedelta(seconds=1)).isoformat().replace("+00:00", "Z"),
        "seq": 1,
        "power_kw": 800.0,
        "wind_speed_ms": 8.0,
        "temperature_c": 15.0,
        "state": "running",
    }
    fields.update(overrides)
    # json, not orjson: it writes NaN, as a faulty sender does.
    return json.dumps({k: v for k, v in fields.items() if v is not MISSING}).encode()


def _ts(delta_s: float) -> str:
    return (datetime.now(UTC) + timedelta(seconds=delta_s)).isoformat()


# code -> builder(turbine_id) -> (raw bytes, routing turbine id)
CRAFTED: dict[ReasonCode, Callable[[str], tuple[bytes, str]]] = {
    ReasonCode.OVERSIZED: lambda t: (b" " * MAX_MESSAGE_BYTES + payload(t), t),
    ReasonCode.MALFORMED_JSON: lambda t: (payload(t)[:-1], t),
    ReasonCode.NOT_AN_OBJECT: lambda t: (b"[1, 2]", t),
    ReasonCode.UNSUPPORTED_VERSION: lambda t: (payload(t, v=2), t),
    ReasonCode.MISSING_FIELD: lambda t: (payload(t, power_kw=MISSING), t),
    ReasonCode.UNKNOWN_FIELD: lambda t: (payload(t, power_w=1.0), t),
    ReasonCode.DUPLICATE_FIELD: lambda t: (payload(t)[:-1] + b', "power_kw": 1.0}', t),
    ReasonCode.WRONG_TYPE: lambda t: (payload(t, power_kw="812.5"), t),
    ReasonCode.NON_FINITE: lambda t: (payload(t, power_kw=float("nan")), t),
    ReasonCode.INVALID_TURBINE_ID: lambda t: (payload("WTG 01"), t),
    ReasonCode.INVALID_SEQ: lambda t: (payload(t, seq=-1), t),
    ReasonCode.INVALID_STATE: lambda t: (payload(t, state="flying"), t),
    ReasonCode.INVALID_TIMESTAMP: lambda t: (payload(t, ts="yesterday"), t),
    ReasonCode.MISSING_UTC_OFFSET: lambda t: (payload(t, ts="2026-11-28T17:59:59"), t),
    ReasonCode.FUTURE_TIMESTAMP: lambda t: (payload(t, ts=_ts(3600)), t),
    ReasonCode.STALE_TIMESTAMP: lambda t: (payload(t, ts=_ts(-8 * 86400)), t),
    ReasonCode.UNKNOWN_TURBINE: lambda t: (payload("NOPE-" + t), "NOPE-" + t),
    ReasonCode.TURBINE_MISMATCH: lambda t: (payload(t), "OTHER-" + t),
    ReasonCode.POWER_OUT_OF_RANGE: lambda t: (payload(t, power_kw=1.5 * RATED), t),
    ReasonCode.WIND_OUT_OF_RANGE: lambda t: (payload(t, wind_speed_ms=75.0), t),
    ReasonCode.TEMPERATURE_OUT_OF_RANGE: lambda t: (payload(t, temperature_c=85.0), t),
    ReasonCode.ROTOR_RPM_OUT_OF_RANGE: lambda t: (payload(t, rotor_rpm=-1.0), t),
    ReasonCode.PITCH_OUT_OF_RANGE: lambda t: (payload(t, pitch_deg=96.0), t),
    ReasonCode.NACELLE_TEMPERATURE_OUT_OF_RANGE: lambda t: (
        payload(t, nacelle_temperature_c=101.0),
        t,
    ),
    ReasonCode.WIND_DIRECTION_OUT_OF_RANGE: lambda t: (payload(t, wind_direction_deg=361.0), t),
    ReasonCode.SETPOINT_OUT_OF_RANGE: lambda t: (payload(t, setpoint_kw=-1.0), t),
}


# INVALID_VALUE is the validator's fallback for a pydantic error type no rule knows (a
# future pydantic); no message can produce it today. tests/unit/test_validation.py covers it.
REACHABLE = [code for code in ReasonCode if code is not ReasonCode.INVALID_VALUE]


def test_every_reason_code_has_a_pipeline_case() -> None:
    assert set(CRAFTED) == set(REACHABLE)


@pytest.fixture(scope="module")
async def rejects(
    db_pool: asyncpg.Pool, amqp: AbstractRobustConnection
) -> dict[ReasonCode, tuple[bytes, asyncpg.Record]]:
    """Publish every crafted message once, through one concentrator run."""
    turbine = new_turbine_id("RC")
    async with db_pool.acquire() as conn:
        await registry.add_turbine(conn, turbine, model="E-82/2300")
    sent = {code: build(turbine) for code, build in CRAFTED.items()}
    messages = [
        (routing, raw, f"{routing}:{i}:{code.value}")
        for i, (code, (raw, routing)) in enumerate(sent.items())
    ]
    async with running_concentrator():
        await publish_all(amqp, messages)
        keys = [f"amqp:{mid}" for _, _, mid in messages]
        await eventually(
            lambda: _all_stored(db_pool, keys),
        )
    async with db_pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT dedup_key, payload, reasons, details, source FROM rejected_readings"
            " WHERE dedup_key = ANY($1::text[])",
            keys,
        )
    by_code = {ReasonCode(r["dedup_key"].rsplit(":", 1)[1]): r for r in rows}
    return {code: (sent[code][0], by_code[code]) for code in CRAFTED}


async def _all_stored(pool: asyncpg.Pool, keys: list[str]) -> bool:
    stored = await count(
        pool, "SELECT count(*) FROM rejected_readings WHERE dedup_key = ANY($1::text[])", keys
    )
    return stored == len(keys)


@pytest.mark.parametrize("code", REACHABLE, ids=[c.value for c in REACHABLE])
async def test_crafted_message_is_rejected_with_its_code_and_raw_bytes(
    rejects: dict[ReasonCode, tuple[bytes, asyncpg.Record]], code: ReasonCode
) -> None:
    raw, row = rejects[code]
    assert code.value in row["reasons"]
    assert bytes(row["payload"]) == raw
    assert row["source"] == "amqp"
    details = json.loads(row["details"])
    assert all(d["message"] for d in details)
