"""Quality report, rejects and power curve through the API, against the real database."""

from __future__ import annotations

import base64
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx
import pytest

from tests.factories import accepted, make_series
from tests.integration.test_api_reads import register
from windpark.simulation import ParkSimulator, Reliability, SimTurbine, Site
from windpark.simulation.backfill import backfill
from windpark.storage import RejectedMessage, write_batch
from windpark.turbine_model import load_model


async def test_quality_report_counts_every_kind_of_outcome(
    client: httpx.AsyncClient,
    db_pool: asyncpg.Pool,
) -> None:
    [turbine] = await register(db_pool, 1)
    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=2)
    readings = make_series(turbine, hour, 1800, step_s=2)
    batch = [accepted(r) for r in readings]
    batch[::100] = [replace(a, quality_flags=2) for a in batch[::100]]  # 18 spikes
    batch[1::300] = [replace(a, quality_flags=1 | 8) for a in batch[1::300]]  # 6 mismatch+gap
    rejects = [
        RejectedMessage(
            payload=b'{"v": 1, "power_kw": NaN}',
            reasons=[("non_finite", "power_kw is NaN", "power_kw"), ("missing_field", "ts", "ts")],
            source="amqp",
            received_at=hour + timedelta(minutes=5, seconds=i),
            dedup_key=f"quality-test:{turbine}:{i}",
            turbine_id=turbine,
        )
        for i in range(4)
    ]
    async with db_pool.acquire() as conn:
        await write_batch(conn, batch, rejects)
        await write_batch(conn, [accepted(r, key=f"again-{r.seq}") for r in readings[:10]], [])
    answer = await client.get(
        f"/v1/turbines/{turbine}/quality",
        params={"from": hour.isoformat(), "to": (hour + timedelta(hours=1)).isoformat()},
    )
    assert answer.status_code == 200, answer.text
    [bucket] = answer.json()["buckets"]
    assert bucket["stored"] == 1800
    assert bucket["flagged"] == 24
    assert bucket["clean"] == 1776
    assert bucket["flagged_by_kind"]["spike"] == 18
    assert bucket["flagged_by_kind"]["power_wind_mismatch"] == 6
    assert bucket["flagged_by_kind"]["seq_gap"] == 6
    assert bucket["rejected"] == 4
    assert bucket["rejected_by_reason"] == {"non_finite": 4, "missing_field": 4}
    assert bucket["duplicates"] == 10
    assert bucket["received"] == 1800 + 4 + 10
    assert bucket["completeness"] == 0.5  # one reading every 2 s, 1 Hz expected


async def test_rejects_are_listed_with_their_bytes_newest_first_in_pages(
    client: httpx.AsyncClient,
    db_pool: asyncpg.Pool,
) -> None:
    [turbine] = await register(db_pool, 1)
    now = datetime.now(UTC)
    payloads = [b"\xff\xfe" + bytes([i]) for i in range(5)]
    rejects = [
        RejectedMessage(
            payload=p,
            reasons=[("malformed_json", "not UTF-8", None)],
            source="mqtt",
            received_at=now - timedelta(seconds=10 - i),
            dedup_key=f"rejects-test:{turbine}:{i}",
            turbine_id=turbine,
        )
        for i, p in enumerate(payloads)
    ]
    async with db_pool.acquire() as conn:
        await write_batch(conn, [], rejects)
    first = await client.get("/v1/rejects", params={"turbine_id": turbine, "limit": 3})
    assert first.status_code == 200, first.text
    page = first.json()
    assert [base64.b64decode(r["payload_base64"]) for r in page["rejects"]] == payloads[::-1][:3]
    assert page["rejects"][0]["reasons"] == ["malformed_json"]
    assert page["rejects"][0]["source"] == "mqtt"
    second = await client.get(
        "/v1/rejects", params={"turbine_id": turbine, "limit": 3, "cursor": page["next_cursor"]}
    )
    rest = second.json()
    assert [base64.b64decode(r["payload_base64"]) for r in rest["rejects"]] == payloads[1::-1]
    assert rest["next_cursor"] is None
    filtered = await client.get(
        "/v1/rejects", params={"turbine_id": turbine, "reason": "non_finite"}
    )
    assert filtered.json()["rejects"] == []
    assert (await client.get("/v1/rejects", params={"reason": "nonsense"})).status_code == 422


@pytest.mark.parametrize("path", ["/v1/rejects", "/v1/conflicts"])
async def test_a_cursor_past_bigint_is_a_422_not_a_500(
    client: httpx.AsyncClient,
    path: str,
) -> None:
    """19 digits pass the pattern but can exceed the ids' bigint: refused before the query."""
    largest = str(2**63 - 1)
    assert (await client.get(path, params={"cursor": largest})).status_code == 200
    answer = await client.get(path, params={"cursor": str(2**63)})
    assert answer.status_code == 422, answer.text
    [error] = answer.json()["detail"]
    assert error["loc"] == ["query", "cursor"]
    assert largest in error["msg"]
    assert (await client.get(path, params={"cursor": "9" * 19})).status_code == 422


async def test_power_curve_of_a_simulated_turbine_is_on_its_model(
    client: httpx.AsyncClient,
    db_pool: asyncpg.Pool,
) -> None:
    [turbine] = await register(db_pool, 1)
    # The weather is a function of (seed, time) and the outage schedule of (seed, turbine
    # id, time): a window fixed here and a turbine that never fails make the test's data
    # the same on every run. With the clock's window and this test's random id, about 1
    # run in 60 drew a 6-hour outage, and so no running reading at all.
    end = datetime(2026, 6, 1, 18, tzinfo=UTC)
    start = end - timedelta(hours=6)
    never_fails = Reliability(mtbf_days=1e6, maintenance_interval_days=100_000)
    sim = ParkSimulator(
        [SimTurbine(turbine, load_model("E-82/2300"), reliability=never_fails)], Site(), seed=11
    )
    async with db_pool.acquire() as conn:
        await backfill(conn, sim, start, end, interval_s=2.0)
    answer = await client.get(
        f"/v1/turbines/{turbine}/power-curve",
        params={"from": start.isoformat(), "to": end.isoformat()},
    )
    assert answer.status_code == 200, answer.text
    curve = answer.json()
    assert curve["readings_used"] > 5000
    assert abs(curve["performance_ratio"] - 1.0) < 0.03
    assert all(b["bin_ms"] % 0.5 == 0 for b in curve["bins"])
    missing = await client.get("/v1/turbines/NOPE-1/power-curve")
    assert missing.status_code == 404
    too_long = await client.get(
        f"/v1/turbines/{turbine}/power-curve",
        params={"from": (end - timedelta(days=400)).isoformat(), "to": end.isoformat()},
    )
    assert too_long.status_code == 422


async def test_park_series_alone_fits_long_windows_and_keeps_its_numbers(
    client: httpx.AsyncClient,
    db_pool: asyncpg.Pool,
) -> None:
    turbines = await register(db_pool, 3)
    start = datetime(2024, 7, 3, 10, tzinfo=UTC)
    async with db_pool.acquire() as conn:
        for i, turbine in enumerate(turbines):
            await write_batch(
                conn, [accepted(r) for r in make_series(turbine, start, 300 + 50 * i)], []
            )
    window = {"from": start.isoformat(), "to": (start + timedelta(hours=1)).isoformat()}
    full = (await client.get("/v1/park/aggregates", params={**window, "bucket": "1m"})).json()
    alone = (
        await client.get(
            "/v1/park/aggregates", params={**window, "bucket": "1m", "per_turbine": "false"}
        )
    ).json()
    assert [b["park_mean_power_kw"] for b in alone["buckets"]] == [
        b["park_mean_power_kw"] for b in full["buckets"]
    ]
    for a, f in zip(alone["buckets"], full["buckets"], strict=True):
        assert a["turbines"] == []
        assert abs(a["energy_kwh"] - f["energy_kwh"]) < 1e-6 * max(1.0, f["energy_kwh"])
    # A year of hours is over the cap with every turbine's series, within it without them.
    year = {"desde": "2024-01-01T00:00:00Z", "hasta": "2025-01-01T00:00:00Z", "intervalo": "hora"}
    assert (await client.get("/agregados/", params=year)).status_code == 422
    answer = await client.get("/agregados/", params={**year, "por_generador": "false"})
    assert answer.status_code == 200, answer.text
