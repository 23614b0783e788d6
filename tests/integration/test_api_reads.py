"""The aggregator's read side against the real TimescaleDB: latest values, aggregates from
the rollups (checked against raw SQL), local-day buckets across DST, history pages, errors."""

from __future__ import annotations

import asyncio
import math
import random
import time
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import httpx
import pytest
from pydantic import BaseModel

from services.aggregator import schemas
from services.aggregator.app import create_app
from services.aggregator.buckets import floor_day
from services.aggregator.config import Settings
from tests import energy_reference
from tests.conftest import new_turbine_id, with_lifespan_state
from tests.factories import accepted, make_reading, make_series
from windpark import registry
from windpark.bootstrap import SetupSettings
from windpark.contract import TurbineState
from windpark.storage import write_batch

MADRID = ZoneInfo("Europe/Madrid")


async def register(db_pool: asyncpg.Pool, count: int) -> list[str]:
    ids = [new_turbine_id("API") for _ in range(count)]
    async with db_pool.acquire() as conn:
        for tid in ids:
            await registry.add_turbine(conn, tid, model="E-82/2300")
    return ids


async def store(db_pool: asyncpg.Pool, readings: list[Any]) -> None:
    async with db_pool.acquire() as conn:
        await write_batch(conn, [accepted(r) for r in readings], [])


def lonely_minute() -> datetime:
    """A random minute of 2024, a year no other test writes to, so park-wide sums are
    this test's alone."""
    return datetime(2024, 1, 1, tzinfo=UTC) + timedelta(minutes=random.randrange(500_000))


def by_id(items: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {item["turbine_id"]: item for item in items}


def ts(text: str) -> datetime:
    return datetime.fromisoformat(text)


def assert_serialized_as(model: type[BaseModel], answer: httpx.Response) -> None:
    """The answer validates against ``model`` and is what the model itself would write
    (key order, integers, floats, "Z" or local offsets)."""
    assert answer.headers["content-type"] == "application/json"
    assert model.model_validate_json(answer.content).model_dump_json().encode() == answer.content


# Latest values --------------------------------------------------------------------------------


async def test_latest_lists_every_registered_turbine_with_its_age(
    client: httpx.AsyncClient, db_pool: asyncpg.Pool
) -> None:
    sending, silent = await register(db_pool, 2)
    now = datetime.now(UTC).replace(microsecond=0)
    await store(
        db_pool,
        [
            make_reading(turbine_id=sending, ts=now - timedelta(seconds=20), seq=1),
            make_reading(turbine_id=sending, ts=now - timedelta(seconds=10), seq=2, power_kw=321.0),
        ],
    )

    for path in ("/datos-generadores/", "/v1/turbines/latest"):
        answer = await client.get(path)
        assert answer.status_code == 200
        body = answer.json()
        turbines = by_id(body["turbines"])
        got = turbines[sending]
        assert ts(got["ts"]) == now - timedelta(seconds=10)
        assert got["seq"] == 2
        assert got["power_kw"] == 321.0
        assert got["state"] == "running"
        assert got["model"] == "E-82/2300"
        assert got["rated_power_kw"] > 0
        # age_s = as_of - ts, from the database clock.
        expected_age = (ts(body["as_of"]) - (now - timedelta(seconds=10))).total_seconds()
        assert got["age_s"] == pytest.approx(expected_age, abs=1e-3)
        assert 9.0 <= got["age_s"] < 120.0
        assert turbines[silent]["ts"] is None
        assert turbines[silent]["age_s"] is None
        assert turbines[silent]["power_kw"] is None

    one = await client.get(f"/v1/turbines/{sending}/latest")
    assert one.status_code == 200
    assert one.json()["seq"] == 2
    missing = await client.get(f"/v1/turbines/{new_turbine_id()}/latest")
    assert missing.status_code == 404
    assert "not registered" in missing.json()["detail"]


async def test_registry_lists_turbines(client: httpx.AsyncClient, db_pool: asyncpg.Pool) -> None:
    [tid] = await register(db_pool, 1)
    answer = await client.get("/v1/turbines")
    assert answer.status_code == 200
    got = by_id(answer.json()["turbines"])[tid]
    assert got["model"] == "E-82/2300"
    assert got["name"] == tid


# Park aggregates ------------------------------------------------------------------------------


async def test_park_mean_equals_raw_average_with_unequal_counts(
    client: httpx.AsyncClient, db_pool: asyncpg.Pool
) -> None:
    ids = await register(db_pool, 3)
    minute = lonely_minute()
    counts = {ids[0]: 7, ids[1]: 3, ids[2]: 12}
    readings = []
    for i, (tid, count) in enumerate(counts.items()):
        # Different power levels per turbine: a mean of means would differ from the mean.
        for r in make_series(tid, minute + timedelta(seconds=i), count, step_s=4.0):
            readings.append(r.model_copy(update={"power_kw": r.power_kw + 500.0 * i}))
    await store(db_pool, readings)

    answer = await client.get(
        "/agregados/",
        params={"desde": minute.isoformat(), "hasta": (minute + timedelta(minutes=1)).isoformat()},
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["bucket"] == "1m"
    [bucket] = body["buckets"]
    assert ts(bucket["bucket_start"]) == minute
    assert bucket["partial"] is False
    assert bucket["duration_s"] == 60

    async with db_pool.acquire() as conn:
        raw_mean = await conn.fetchval(
            "SELECT avg(power_kw) FROM readings WHERE ts >= $1 AND ts < $1 + INTERVAL '1 minute'",
            minute,
        )
        per_turbine = {
            row["turbine_id"]: row
            for row in await conn.fetch(
                """
                SELECT turbine_id, count(*) AS n, avg(power_kw) AS avg, min(power_kw) AS min,
                       max(power_kw) AS max, stddev_samp(power_kw) AS std,
                       avg(wind_speed_ms) AS wind, avg(temperature_c) AS temp,
                       stddev_samp(temperature_c) AS temp_std
                FROM readings WHERE ts >= $1 AND ts < $1 + INTERVAL '1 minute'
                GROUP BY turbine_id
                """,
                minute,
            )
        }
        energy = await energy_reference.measured(
            conn, ids, energy_reference.fixed_buckets(timedelta(minutes=1))
        )
    assert bucket["park_mean_power_kw"] == pytest.approx(raw_mean, rel=1e-12)
    assert bucket["n"] == sum(counts.values())
    assert bucket["turbines_reporting"] == 3
    assert bucket["park_total_power_kw"] == pytest.approx(
        sum(row["avg"] for row in per_turbine.values()), rel=1e-12
    )
    # The mean of all readings is not the mean of the turbines' means here.
    mean_of_means = sum(row["avg"] for row in per_turbine.values()) / 3
    assert not math.isclose(bucket["park_mean_power_kw"], mean_of_means, rel_tol=1e-6)

    turbines = by_id(bucket["turbines"])
    assert set(turbines) == set(ids)
    for tid, got in turbines.items():
        want = per_turbine[tid]
        assert got["n"] == want["n"] == counts[tid]
        assert got["power_avg_kw"] == pytest.approx(want["avg"], abs=1e-6)
        assert got["power_min_kw"] == want["min"]
        assert got["power_max_kw"] == want["max"]
        assert got["power_std_kw"] == pytest.approx(want["std"], abs=1e-6)
        assert got["wind_speed_avg_ms"] == pytest.approx(want["wind"], abs=1e-6)
        assert got["temperature_avg_c"] == pytest.approx(want["temp"], abs=1e-6)
        assert got["temperature_std_c"] == pytest.approx(want["temp_std"], abs=1e-6)
        assert got["availability"] == 1.0
        # Measured: 4 s apart, each reading holds 3 s (the default max_hold_s), the
        # last one nothing yet.
        measured = energy[(tid, minute)]
        assert got["energy_kwh"] == pytest.approx(measured.energy_kwh, rel=1e-9)
        assert got["covered_s"] == pytest.approx(measured.covered_s) == 3 * (counts[tid] - 1)
        assert got["coverage"] == pytest.approx(measured.covered_s / 60)

    # /v1/park/aggregates is the same computation.
    v1 = await client.get(
        "/v1/park/aggregates",
        params={
            "bucket": "1m",
            "from": minute.isoformat(),
            "to": (minute + timedelta(minutes=1)).isoformat(),
        },
    )
    assert v1.status_code == 200
    assert v1.json()["buckets"] == body["buckets"]

    # Without the breakdown, the park series comes from the park rollup (one row per
    # bucket) instead of the turbine rows: the same numbers, to the last bit.
    park_only = await client.get(
        "/agregados/",
        params={
            "desde": minute.isoformat(),
            "hasta": (minute + timedelta(minutes=1)).isoformat(),
            "por_generador": "false",
        },
    )
    assert park_only.status_code == 200, park_only.text
    [lean] = park_only.json()["buckets"]
    assert lean["turbines"] == []
    for key, value in bucket.items():
        if isinstance(value, float):
            assert lean[key] == pytest.approx(value, rel=1e-12), key
        elif key != "turbines":
            assert lean[key] == value, key

    # The answers are serialized without pydantic (aggregates.answer_json): they must
    # be byte for byte what the documented models would write.
    for each in (answer, v1, park_only):
        assert_serialized_as(schemas.ParkAggregates, each)


async def test_availability_counts_fault_and_maintenance_as_unavailable(
    client: httpx.AsyncClient, db_pool: asyncpg.Pool
) -> None:
    [tid] = await register(db_pool, 1)
    minute = lonely_minute()
    states = [TurbineState.RUNNING] * 6 + [TurbineState.FAULT] * 3 + [TurbineState.IDLE]
    await store(
        db_pool,
        [
            make_reading(turbine_id=tid, ts=minute + timedelta(seconds=i), seq=i, state=s)
            for i, s in enumerate(states)
        ],
    )
    answer = await client.get(
        f"/v1/turbines/{tid}/aggregates",
        params={
            "bucket": "1m",
            "from": minute.isoformat(),
            "to": (minute + timedelta(minutes=1)).isoformat(),
        },
    )
    assert answer.status_code == 200
    [bucket] = answer.json()["buckets"]
    assert (bucket["n"], bucket["n_available"]) == (10, 7)
    assert bucket["availability"] == pytest.approx(0.7)


async def test_each_interval_reads_its_own_buckets(
    client: httpx.AsyncClient, db_pool: asyncpg.Pool
) -> None:
    [tid] = await register(db_pool, 1)
    start = datetime(2025, 6, 3, 10, 0, tzinfo=UTC) + timedelta(days=random.randrange(150))
    readings = make_series(tid, start, 240, step_s=30.0)  # two hours, one reading per 30 s
    await store(db_pool, readings)
    window = {"desde": start.isoformat(), "hasta": (start + timedelta(hours=2)).isoformat()}

    expected = {"minuto": (120, 2, 60), "10min": (12, 20, 600), "hora": (2, 120, 3600)}
    for intervalo, (buckets, n, width_s) in expected.items():
        answer = await client.get(
            "/agregados/", params={**window, "intervalo": intervalo, "generador": tid}
        )
        assert answer.status_code == 200, answer.text
        got = answer.json()["buckets"]
        assert len(got) == buckets, intervalo
        assert {b["n"] for b in got} == {n}
        assert {b["duration_s"] for b in got} == {width_s}
        starts = [ts(b["bucket_start"]) for b in got]
        assert starts == [start + timedelta(seconds=width_s * i) for i in range(buckets)]
        # Only this turbine, although the park has many.
        assert {t["turbine_id"] for b in got for t in b["turbines"]} == {tid}

    day = await client.get(
        "/agregados/",
        params={
            "intervalo": "dia",
            "generador": tid,
            "desde": start.replace(hour=0).isoformat(),
            "hasta": (start.replace(hour=0) + timedelta(days=1)).isoformat(),
        },
    )
    assert day.status_code == 200
    [bucket] = day.json()["buckets"]
    assert bucket["n"] == 240
    assert bucket["duration_s"] == 86400

    # The 10-minute statistics equal the raw ones.
    async with db_pool.acquire() as conn:
        raw = await conn.fetch(
            """
            SELECT time_bucket(INTERVAL '10 minutes', ts) AS bucket, avg(power_kw) AS avg,
                   stddev_samp(power_kw) AS std, max(wind_speed_ms) AS wind_max
            FROM readings WHERE turbine_id = $1 GROUP BY 1 ORDER BY 1
            """,
            tid,
        )
        energy = await energy_reference.measured(
            conn, [tid], energy_reference.fixed_buckets(timedelta(minutes=10))
        )
    v1 = await client.get(
        f"/v1/turbines/{tid}/aggregates",
        params={
            "bucket": "10m",
            "from": start.isoformat(),
            "to": (start + timedelta(hours=2)).isoformat(),
        },
    )
    assert v1.status_code == 200
    got = v1.json()["buckets"]
    assert [ts(b["bucket_start"]) for b in got] == [r["bucket"] for r in raw]
    for b, r in zip(got, raw, strict=True):
        assert b["power_avg_kw"] == pytest.approx(r["avg"], abs=1e-6)
        assert b["power_std_kw"] == pytest.approx(r["std"], abs=1e-6)
        assert b["wind_speed_max_ms"] == r["wind_max"]
        measured = energy[(tid, r["bucket"])]
        assert b["energy_kwh"] == pytest.approx(measured.energy_kwh, rel=1e-9)
        assert b["covered_s"] == pytest.approx(measured.covered_s)


async def test_default_window_ends_with_the_current_partial_bucket(
    client: httpx.AsyncClient, db_pool: asyncpg.Pool
) -> None:
    [tid] = await register(db_pool, 1)
    now = datetime.now(UTC)
    current_minute = now.replace(second=0, microsecond=0)
    await store(
        db_pool,
        [
            make_reading(turbine_id=tid, ts=current_minute - timedelta(minutes=5), seq=1),
            make_reading(turbine_id=tid, ts=now - timedelta(milliseconds=1), seq=2),
        ],
    )
    answer = await client.get("/agregados/", params={"generador": tid})
    assert answer.status_code == 200
    assert_serialized_as(schemas.ParkAggregates, answer)  # a partial bucket included
    body = answer.json()
    assert ts(body["window_end"]) - ts(body["window_start"]) == timedelta(hours=1)
    buckets = body["buckets"]
    # The current minute may have turned since `now` was read; the last bucket is partial
    # unless it has.
    assert len(buckets) == 2
    assert buckets[0]["partial"] is False
    last_start = ts(buckets[-1]["bucket_start"])
    assert last_start == current_minute
    assert buckets[-1]["partial"] is (last_start + timedelta(minutes=1) > ts(body["generated_at"]))
    assert ts(body["complete_until"]) >= last_start


# Local days across DST ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("day", "hours"),
    [(datetime(2026, 3, 29), 23), (datetime(2026, 10, 25), 25), (datetime(2026, 6, 10), 24)],
)
async def test_day_buckets_follow_the_callers_zone_across_dst(
    client: httpx.AsyncClient, db_pool: asyncpg.Pool, turbine_id: str, day: datetime, hours: int
) -> None:
    # One reading per hour (at hh:30) from the day before to the day after, in Madrid time.
    first = day.replace(tzinfo=MADRID) - timedelta(days=1)
    start_utc = first.astimezone(UTC)
    readings = make_series(turbine_id, start_utc + timedelta(minutes=30), 24 * 3 + 1, step_s=3600)
    await store(db_pool, readings)

    answer = await client.get(
        f"/v1/turbines/{turbine_id}/aggregates",
        params={
            "bucket": "1d",
            "tz": "Europe/Madrid",
            "from": day.replace(tzinfo=MADRID).isoformat(),
            "to": (day + timedelta(days=1)).replace(tzinfo=MADRID).isoformat(),
        },
    )
    assert answer.status_code == 200, answer.text
    assert_serialized_as(schemas.TurbineAggregates, answer)
    body = answer.json()
    [bucket] = body["buckets"]
    assert bucket["bucket_start"] == day.replace(tzinfo=MADRID).isoformat()
    assert bucket["bucket_end"] == (day + timedelta(days=1)).replace(tzinfo=MADRID).isoformat()
    assert bucket["duration_s"] == hours * 3600
    assert bucket["n"] == hours

    async with db_pool.acquire() as conn:
        raw = await conn.fetchrow(
            """
            SELECT count(*) AS n, avg(power_kw) AS avg, stddev_samp(power_kw) AS std
            FROM readings WHERE turbine_id = $1 AND ts >= $2 AND ts < $3
            """,
            turbine_id,
            day.replace(tzinfo=MADRID),
            (day + timedelta(days=1)).replace(tzinfo=MADRID),
        )
        energy = await energy_reference.measured(conn, [turbine_id], lambda t: floor_day(t, MADRID))
    assert raw is not None
    assert raw["n"] == hours
    assert bucket["power_avg_kw"] == pytest.approx(raw["avg"], abs=1e-6)
    assert bucket["power_std_kw"] == pytest.approx(raw["std"], abs=1e-6)
    # Hourly readings each hold 3 s (max_hold_s): measured energy, not 24 x the mean.
    measured = energy[(turbine_id, day.replace(tzinfo=MADRID))]
    assert bucket["energy_kwh"] == pytest.approx(measured.energy_kwh, rel=1e-9)
    assert bucket["covered_s"] == pytest.approx(measured.covered_s) == 3 * hours

    # The same day in UTC is 24 hours, from rollup_1d.
    utc = await client.get(
        f"/v1/turbines/{turbine_id}/aggregates",
        params={
            "bucket": "1d",
            "from": day.replace(tzinfo=UTC).isoformat(),
            "to": (day + timedelta(days=1)).replace(tzinfo=UTC).isoformat(),
        },
    )
    [utc_bucket] = utc.json()["buckets"]
    assert utc_bucket["n"] == 24
    assert utc_bucket["bucket_start"] == day.replace(tzinfo=UTC).isoformat().replace("+00:00", "Z")


async def test_park_day_buckets_are_labelled_with_local_offsets(
    client: httpx.AsyncClient, db_pool: asyncpg.Pool, turbine_id: str
) -> None:
    start = datetime(2026, 3, 28, tzinfo=MADRID)
    await store(db_pool, make_series(turbine_id, start.astimezone(UTC), 72, step_s=3600))
    answer = await client.get(
        "/v1/park/aggregates",
        params={
            "bucket": "1d",
            "tz": "Europe/Madrid",
            "from": start.isoformat(),
            "to": datetime(2026, 3, 31, tzinfo=MADRID).isoformat(),
        },
    )
    assert answer.status_code == 200, answer.text
    assert_serialized_as(schemas.ParkAggregates, answer)
    buckets = answer.json()["buckets"]
    assert [b["bucket_start"] for b in buckets] == [
        "2026-03-28T00:00:00+01:00",
        "2026-03-29T00:00:00+01:00",
        "2026-03-30T00:00:00+02:00",
    ]
    assert [b["duration_s"] for b in buckets] == [86400, 82800, 86400]
    mine = [by_id(b["turbines"])[turbine_id]["n"] for b in buckets]
    assert mine == [24, 23, 24]  # 72 hourly readings from Mar 28 00:00 +01:00


async def test_seed_day_buckets_accept_a_zone(
    client: httpx.AsyncClient, db_pool: asyncpg.Pool, turbine_id: str
) -> None:
    day = datetime(2026, 10, 25, tzinfo=MADRID)
    await store(db_pool, make_series(turbine_id, day.astimezone(UTC), 25, step_s=3600))
    answer = await client.get(
        "/agregados/",
        params={
            "intervalo": "dia",
            "zona": "Europe/Madrid",
            "generador": turbine_id,
            "desde": "2026-10-25T00:00:00+02:00",
            "hasta": "2026-10-26T00:00:00+01:00",
        },
    )
    assert answer.status_code == 200, answer.text
    [bucket] = answer.json()["buckets"]
    assert bucket["duration_s"] == 25 * 3600
    assert bucket["n"] == 25


# Raw history ----------------------------------------------------------------------------------


async def test_readings_are_paged_by_keyset(
    client: httpx.AsyncClient, db_pool: asyncpg.Pool, turbine_id: str
) -> None:
    start = datetime(2026, 4, 2, 8, tzinfo=UTC)
    await store(db_pool, make_series(turbine_id, start, 25, step_s=7.0))
    params: dict[str, Any] = {
        "from": start.isoformat(),
        "to": (start + timedelta(hours=1)).isoformat(),
        "limit": 10,
    }
    seen: list[datetime] = []
    pages = 0
    while True:
        answer = await client.get(f"/v1/turbines/{turbine_id}/readings", params=params)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        pages += 1
        seen += [ts(r["ts"]) for r in body["readings"]]
        if body["next_cursor"] is None:
            break
        params["cursor"] = body["next_cursor"]
        assert pages < 10
    assert pages == 3
    assert seen == [start + timedelta(seconds=7.0 * i) for i in range(25)]

    bad = await client.get(f"/v1/turbines/{turbine_id}/readings", params={"cursor": "!!"})
    assert bad.status_code == 422
    too_many = await client.get(f"/v1/turbines/{turbine_id}/readings", params={"limit": 10_001})
    assert too_many.status_code == 422
    unknown = await client.get(f"/v1/turbines/{new_turbine_id()}/readings")
    assert unknown.status_code == 404


# Parameter errors -----------------------------------------------------------------------------


async def test_points_cap_answers_422_naming_a_coarser_bucket(
    client: httpx.AsyncClient, turbine_id: str
) -> None:
    week = {"from": "2026-01-01T00:00:00Z", "to": "2026-01-08T00:00:00Z"}
    answer = await client.get(
        f"/v1/turbines/{turbine_id}/aggregates", params={**week, "bucket": "1m"}
    )
    assert answer.status_code == 422
    [error] = answer.json()["detail"]
    assert error["type"] == "points_cap"
    assert "10080" in error["msg"]
    assert "10000" in error["msg"]
    assert "10m" in error["msg"]
    # One bucket size up fits.
    ok = await client.get(f"/v1/turbines/{turbine_id}/aggregates", params={**week, "bucket": "10m"})
    assert ok.status_code == 200

    seed = await client.get(
        "/agregados/",
        params={"intervalo": "minuto", "desde": week["from"], "hasta": week["to"]},
    )
    assert seed.status_code == 422
    [error] = seed.json()["detail"]
    assert error["loc"] == ["query", "intervalo"]
    assert "intervalo=" in error["msg"]


async def test_points_cap_offers_the_park_series_alone(
    client: httpx.AsyncClient, db_pool: asyncpg.Pool
) -> None:
    """A year of hours for every turbine is past the cap; the park series alone fits,
    and the message says how to ask for it, in the route's own words."""
    await register(db_pool, 2)  # at least two series, whatever else is registered
    year = {"desde": "2025-01-01T00:00:00Z", "hasta": "2026-01-01T00:00:00Z"}
    seed = await client.get("/agregados/", params={**year, "intervalo": "hora"})
    assert seed.status_code == 422
    [error] = seed.json()["detail"]
    assert error["type"] == "points_cap"
    assert "por_generador=false" in error["msg"]
    alone = await client.get(
        "/agregados/", params={**year, "intervalo": "hora", "por_generador": "false"}
    )
    assert alone.status_code == 200, alone.text
    v1 = await client.get(
        "/v1/park/aggregates",
        params={"from": year["desde"], "to": year["hasta"], "bucket": "1h"},
    )
    assert v1.status_code == 422
    assert "per_turbine=false" in v1.json()["detail"][0]["msg"]


@pytest.mark.parametrize(
    ("path", "params", "loc"),
    [
        ("/v1/park/aggregates", {"from": "2026-01-01T00:00:00"}, "from"),
        ("/v1/park/aggregates", {"to": "2026-01-01T10:00:00"}, "to"),
        ("/agregados/", {"desde": "2026-01-01T00:00:00"}, "desde"),
        ("/v1/park/aggregates", {"from": "yesterday"}, "from"),
        ("/v1/park/aggregates", {"from": "1767225600"}, "from"),
        ("/v1/park/aggregates", {"bucket": "1w"}, "bucket"),
        ("/agregados/", {"intervalo": "semana"}, "intervalo"),
        ("/v1/park/aggregates", {"tz": "Mars/Olympus_Mons"}, "tz"),
        ("/v1/park/aggregates", {"tz": "../../etc/passwd"}, "tz"),
        (
            "/v1/park/aggregates",
            {"from": "2026-01-02T00:00:00Z", "to": "2026-01-01T00:00:00Z"},
            "to",
        ),
        (
            "/agregados/",
            {"desde": "2026-01-02T00:00:00Z", "hasta": "2026-01-02T00:00:00Z"},
            "hasta",
        ),
        (
            "/v1/park/aggregates",
            {
                "bucket": "1d",
                "tz": "America/New_York",
                "from": "0001-01-01T00:00:00Z",
                "to": "0001-01-03T00:00:00Z",
            },
            "from",
        ),
    ],
)
async def test_bad_parameters_answer_422_naming_the_parameter(
    client: httpx.AsyncClient, path: str, params: dict[str, str], loc: str
) -> None:
    answer = await client.get(path, params=params)
    assert answer.status_code == 422, answer.text
    assert answer.headers["content-type"] == "application/json"
    errors = answer.json()["detail"]
    assert [e["loc"][-1] for e in errors] == [loc]


async def test_an_unescaped_plus_in_an_offset_still_parses(
    client: httpx.AsyncClient, turbine_id: str
) -> None:
    # curl "...?from=2026-03-29T00:00:00+01:00" sends the "+" as a space.
    answer = await client.get(
        f"/v1/turbines/{turbine_id}/aggregates?bucket=1h"
        "&from=2026-03-29T00:00:00+01:00&to=2026-03-29T05:00:00+02:00"
    )
    assert answer.status_code == 200, answer.text
    assert ts(answer.json()["window_start"]) == datetime(2026, 3, 28, 23, tzinfo=UTC)


# Cross-cutting --------------------------------------------------------------------------------


async def test_answers_carry_security_headers_and_json_errors(client: httpx.AsyncClient) -> None:
    for path, status in (
        ("/v1/turbines", 200),
        ("/nowhere", 404),
        ("/v1/turbines/x%20y/latest", 422),
    ):
        answer = await client.get(path)
        assert answer.status_code == status
        assert answer.headers["x-content-type-options"] == "nosniff"
        assert "frame-ancestors 'none'" in answer.headers["content-security-policy"]
        assert answer.headers["cache-control"] == "no-store"
        assert answer.headers["content-type"] == "application/json"
        assert "detail" in answer.json() or status == 200
    wrong_method = await client.delete("/v1/turbines")
    assert wrong_method.status_code == 405
    assert wrong_method.json() == {"detail": "Method Not Allowed"}


async def test_health_readiness_and_metrics(client: httpx.AsyncClient, turbine_id: str) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok"}

    deadline = time.monotonic() + 15
    while True:
        ready = await client.get("/readyz")
        if ready.status_code == 200 or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.1)
    assert ready.status_code == 200, ready.text
    assert ready.json() == {"status": "ready", "checks": {"database": "ok", "broker": "ok"}}

    await client.get(f"/v1/turbines/{turbine_id}/latest")
    await client.get("/no/such/path")
    metrics = await client.get("/metrics")
    assert metrics.status_code == 200
    assert metrics.headers["content-type"].startswith("text/plain")
    text = metrics.text
    assert (
        'windpark_api_requests_total{method="GET",route="/v1/turbines/{turbine_id}/latest",'
        'status="200"}'
    ) in text
    assert 'route="unmatched",status="404"' in text
    assert turbine_id not in text  # route templates, never raw paths
    assert "windpark_api_request_duration_seconds_bucket" in text
    assert 'windpark_api_ingest_total{outcome="queued"}' in text


async def test_openapi_documents_both_route_sets(client: httpx.AsyncClient) -> None:
    doc = (await client.get("/openapi.json")).json()
    assert doc["info"]["title"] == "windpark"
    for path in (
        "/datos-generadores/",
        "/agregados/",
        "/generador/",
        "/v1/turbines",
        "/v1/turbines/latest",
        "/v1/turbines/{turbine_id}/latest",
        "/v1/turbines/{turbine_id}/readings",
        "/v1/turbines/{turbine_id}/aggregates",
        "/v1/park/aggregates",
        "/v1/readings",
        "/healthz",
        "/readyz",
    ):
        assert path in doc["paths"], path
    for path in ("/generador/", "/v1/readings"):
        body = doc["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"]
        assert {"turbine_id", "ts", "power_kw", "wind_speed_ms", "temperature_c"} <= set(
            body["properties"]
        )
        assert "$defs" not in str(body)
        assert set(doc["paths"][path]["post"]["responses"]) >= {"202", "413", "422", "503"}
    docs = await client.get("/docs")
    assert docs.status_code == 200


async def test_cors_allows_only_configured_origins(prepared: SetupSettings) -> None:
    app = create_app(Settings(cors_origins=["https://ops.example"]))
    async with app.router.lifespan_context(app) as state:
        transport = httpx.ASGITransport(app=with_lifespan_state(app, state))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            preflight = {"access-control-request-method": "GET"}
            allowed = await http.options(
                "/v1/turbines", headers={"origin": "https://ops.example", **preflight}
            )
            assert allowed.status_code == 200
            assert allowed.headers["access-control-allow-origin"] == "https://ops.example"
            assert "access-control-allow-credentials" not in allowed.headers
            refused = await http.options(
                "/v1/turbines", headers={"origin": "https://evil.example", **preflight}
            )
            assert "access-control-allow-origin" not in refused.headers
            simple = await http.get("/v1/turbines", headers={"origin": "https://ops.example"})
            assert simple.headers["access-control-allow-origin"] == "https://ops.example"
