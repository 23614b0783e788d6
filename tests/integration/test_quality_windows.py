"""/v1/quality over any window: every count equals the count of the raw rows inside the
window, partial buckets included; completeness counts only the elapsed part of a bucket
inside the window; rejects without a registered turbine are in the totals."""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import new_turbine_id
from tests.factories import accepted, make_series
from tests.integration.test_api_reads import register
from windpark.db import Connection
from windpark.storage import RejectedMessage, write_batch
from windpark.validation import QualityFlag

EXPECTED_INTERVAL_S = 1.0  # the API's default sampling interval (Settings)
WIDTHS = {"1h": timedelta(hours=1), "1d": timedelta(days=1)}
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
FLAG_NAMES = {str(flag.name).lower(): int(flag) for flag in QualityFlag}
SPAN = timedelta(hours=50)


def bucket_of(t: datetime, width: timedelta) -> datetime:
    """UTC-aligned floor, as time_bucket without an origin does for hours and days."""
    return t - (t - EPOCH) % width


def reject(turbine_id: str | None, at: datetime, n: int, reasons: list[str]) -> RejectedMessage:
    return RejectedMessage(
        payload=b'{"v": 1, "ts": oops',
        reasons=[(code, f"{code} in test", None) for code in reasons],
        source="amqp",
        received_at=at,
        dedup_key=f"quality-window:{new_turbine_id()}:{n}",
        turbine_id=turbine_id,
    )


@pytest.fixture(scope="module")
async def park(db_pool: asyncpg.Pool) -> dict[str, Any]:
    """Two days of a small park in 2021 (no other test writes there): readings with flags,
    duplicates, conflicts, and rejects of registered, unregistered and unreadable ids."""
    start = datetime(2021, 1, 1, tzinfo=UTC) + timedelta(
        minutes=random.randrange(300 * 24 * 60), seconds=random.randrange(60)
    )
    one, two = await register(db_pool, 2)
    unregistered = new_turbine_id("UNREG")
    first = make_series(one, start, int(SPAN.total_seconds() // 37), step_s=37)
    second = make_series(two, start + timedelta(hours=10), 30 * 3600 // 53, step_s=53)
    batch = [accepted(r) for r in first + second]
    batch[::7] = [replace(a, quality_flags=int(QualityFlag.SPIKE)) for a in batch[::7]]
    batch[::11] = [
        replace(a, quality_flags=int(QualityFlag.POWER_WIND_MISMATCH | QualityFlag.SEQ_GAP))
        for a in batch[::11]
    ]
    again = [accepted(r, key=f"again:{r.turbine_id}:{r.seq}") for r in first[::50]]
    conflicting = [
        accepted(r.model_copy(update={"power_kw": r.power_kw + 1}), key=f"other:{r.seq}")
        for r in first[3::40] + second[5::60]
    ]
    ids = [one, two, unregistered, None]
    reason_sets = [["non_finite"], ["missing_field", "non_finite"], ["unknown_turbine"]]
    rejects = [
        reject(ids[n % 4], start + timedelta(seconds=n * 613), n, reason_sets[n % 3])
        for n in range(int(SPAN.total_seconds() // 613))
    ]
    async with db_pool.acquire() as conn:
        await write_batch(conn, batch, rejects)
        await write_batch(conn, again + conflicting, [])
    return {"start": start, "turbines": [one, two], "unregistered": unregistered}


async def raw_counts(
    conn: Connection, start: datetime, end: datetime, turbine_id: str | None
) -> dict[str, list[asyncpg.Record]]:
    """The raw rows of the window, read the plainest way."""
    only = "AND ($3::text IS NULL OR turbine_id = $3)"
    return {
        "readings": await conn.fetch(
            f"SELECT turbine_id, ts, quality_flags FROM readings WHERE ts >= $1 AND ts < $2 {only}",
            start,
            end,
            turbine_id,
        ),
        "rejects": await conn.fetch(
            f"SELECT turbine_id, received_at AS ts, reasons FROM rejected_readings "
            f"WHERE received_at >= $1 AND received_at < $2 {only}",
            start,
            end,
            turbine_id,
        ),
        "duplicates": await conn.fetch(
            f"SELECT turbine_id, ts FROM duplicate_readings WHERE ts >= $1 AND ts < $2 {only}",
            start,
            end,
            turbine_id,
        ),
        "conflicts": await conn.fetch(
            f"SELECT turbine_id, ts FROM conflicting_readings WHERE ts >= $1 AND ts < $2 {only}",
            start,
            end,
            turbine_id,
        ),
        "registered": await conn.fetch("SELECT turbine_id FROM turbines"),
    }


def zero() -> dict[str, Any]:
    return {
        "stored": 0,
        "flagged": 0,
        "flagged_by_kind": dict.fromkeys(FLAG_NAMES, 0),
        "rejected": 0,
        "rejected_by_reason": Counter[str](),
        "duplicates": 0,
        "conflicts": 0,
    }


def expected_report(raw: dict[str, list[asyncpg.Record]], width: timedelta) -> dict[Any, Any]:
    """Counts per (bucket, turbine id) from the raw rows, plus the totals."""
    cells: dict[tuple[datetime, str | None], dict[str, Any]] = defaultdict(zero)
    for row in raw["readings"]:
        cell = cells[(bucket_of(row["ts"], width), row["turbine_id"])]
        cell["stored"] += 1
        cell["flagged"] += row["quality_flags"] != 0
        for name, bit in FLAG_NAMES.items():
            cell["flagged_by_kind"][name] += bool(row["quality_flags"] & bit)
    for row in raw["rejects"]:
        cell = cells[(bucket_of(row["ts"], width), row["turbine_id"])]
        cell["rejected"] += 1
        cell["rejected_by_reason"].update(row["reasons"])
    for table in ("duplicates", "conflicts"):
        for row in raw[table]:
            cells[(bucket_of(row["ts"], width), row["turbine_id"])][table] += 1
    return cells


def answered(items: Iterable[dict[str, Any]]) -> dict[tuple[datetime, str | None], Any]:
    return {(datetime.fromisoformat(b["bucket_start"]), b["turbine_id"]): b for b in items}


def assert_no_negative(node: Any) -> None:
    if isinstance(node, dict):
        for value in node.values():
            assert_no_negative(value)
    elif isinstance(node, list):
        for value in node:
            assert_no_negative(value)
    elif isinstance(node, int | float) and not isinstance(node, bool):
        assert node >= 0, node


async def check_window(
    client: httpx.AsyncClient,
    db_pool: asyncpg.Pool,
    *,
    start: datetime,
    end: datetime,
    bucket: str,
    turbine_id: str | None,
) -> None:
    path = f"/v1/turbines/{turbine_id}/quality" if turbine_id else "/v1/quality"
    params = {"from": start.isoformat(), "to": end.isoformat(), "bucket": bucket}
    answer = await client.get(path, params=params)
    assert answer.status_code == 200, answer.text
    report = answer.json()
    async with db_pool.acquire() as conn:
        raw = await raw_counts(conn, start, end, turbine_id)
    width = WIDTHS[bucket]
    registered = {r["turbine_id"] for r in raw["registered"]}
    cells = expected_report(raw, width)
    assert_no_negative(report)

    want_buckets = {k: v for k, v in cells.items() if k[1] in registered}
    got_buckets = answered(report["buckets"])
    assert got_buckets.keys() == want_buckets.keys()
    for key, want in want_buckets.items():
        got = got_buckets[key]
        for name in ("stored", "flagged", "flagged_by_kind", "rejected", "duplicates"):
            assert got[name] == want[name], (key, name)
        assert got["conflicts"] == want["conflicts"], key
        assert got["rejected_by_reason"] == dict(want["rejected_by_reason"]), key
        assert got["clean"] == want["stored"] - want["flagged"]
        received = want["stored"] + want["rejected"] + want["duplicates"] + want["conflicts"]
        assert got["received"] == received
        # All of 2021 has elapsed: the part of the bucket inside the window counts.
        inside = min(key[0] + width, end) - max(key[0], start)
        expected = inside.total_seconds() / EXPECTED_INTERVAL_S
        assert got["expected"] == pytest.approx(expected)
        assert got["completeness"] == pytest.approx(min(want["stored"] / expected, 1.0))

    want_other = {k: v for k, v in cells.items() if k[1] not in registered}
    got_other = answered(report["unattributed"])
    assert got_other.keys() == want_other.keys()
    for key, want in want_other.items():
        assert got_other[key]["rejected"] == want["rejected"]
        assert got_other[key]["rejected_by_reason"] == dict(want["rejected_by_reason"])

    totals = report["totals"]
    assert totals["stored"] == len(raw["readings"])
    assert totals["rejected"] == len(raw["rejects"])
    assert totals["duplicates"] == len(raw["duplicates"])
    assert totals["conflicts"] == len(raw["conflicts"])
    assert totals["flagged"] == sum(r["quality_flags"] != 0 for r in raw["readings"])
    assert totals["received"] == sum(len(raw[t]) for t in ("readings", "rejects")) + sum(
        len(raw[t]) for t in ("duplicates", "conflicts")
    )
    assert totals["rejected_by_reason"] == dict(
        Counter(code for r in raw["rejects"] for code in r["reasons"])
    )


@settings(
    max_examples=200,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    offset_s=st.integers(min_value=-3600, max_value=int(SPAN.total_seconds())),
    length_s=st.integers(min_value=1, max_value=int(SPAN.total_seconds()) + 3600),
    bucket=st.sampled_from(["1h", "1d"]),
    which=st.sampled_from([None, 0, 1]),
)
async def test_every_count_equals_the_raw_rows_of_any_window(
    *,
    client: httpx.AsyncClient,
    db_pool: asyncpg.Pool,
    park: dict[str, Any],
    offset_s: int,
    length_s: int,
    bucket: str,
    which: int | None,
) -> None:
    start = park["start"] + timedelta(seconds=offset_s)
    turbine_id = None if which is None else park["turbines"][which]
    end = start + timedelta(seconds=length_s)
    await check_window(client, db_pool, start=start, end=end, bucket=bucket, turbine_id=turbine_id)


@pytest.mark.parametrize("bucket", ["1h", "1d"])
async def test_a_window_off_the_hour_counts_the_readings_inside_it(
    client: httpx.AsyncClient,
    db_pool: asyncpg.Pool,
    park: dict[str, Any],
    bucket: str,
) -> None:
    # As reported: from=…T11:00:27Z answered stored 0, clean -129.
    hour = bucket_of(park["start"], timedelta(hours=1)) + timedelta(hours=11)
    start, end = hour + timedelta(seconds=27), hour + timedelta(hours=2)
    one = park["turbines"][0]
    answer = await client.get(
        f"/v1/turbines/{one}/quality",
        params={"from": start.isoformat(), "to": end.isoformat(), "bucket": bucket},
    )
    assert answer.status_code == 200, answer.text
    totals = answer.json()["totals"]
    async with db_pool.acquire() as conn:
        stored = await conn.fetchval(
            "SELECT count(*) FROM readings WHERE turbine_id = $1 AND ts >= $2 AND ts < $3",
            one,
            start,
            end,
        )
    assert stored > 0
    assert totals["stored"] == stored
    assert totals["clean"] >= 0
    await check_window(client, db_pool, start=start, end=end, bucket=bucket, turbine_id=one)


async def test_rejects_without_a_registered_turbine_are_in_the_totals_not_the_turbines(
    client: httpx.AsyncClient,
    db_pool: asyncpg.Pool,
    park: dict[str, Any],
) -> None:
    start, end = park["start"], park["start"] + SPAN
    answer = await client.get(
        "/v1/quality", params={"from": start.isoformat(), "to": end.isoformat()}
    )
    assert answer.status_code == 200, answer.text
    report = answer.json()
    unregistered = park["unregistered"]
    listed = {b["turbine_id"] for b in report["buckets"]}
    assert unregistered not in listed
    assert None not in listed
    others = {b["turbine_id"] for b in report["unattributed"]}
    assert others == {unregistered, None}
    async with db_pool.acquire() as conn:
        rejects = await conn.fetchval(
            "SELECT count(*) FROM rejected_readings WHERE received_at >= $1 AND received_at < $2",
            start,
            end,
        )
    assert report["totals"]["rejected"] == rejects
    assert sum(b["rejected"] for b in report["buckets"] + report["unattributed"]) == rejects
    # The per-turbine report agrees: an unregistered turbine has none.
    alone = await client.get(f"/v1/turbines/{unregistered}/quality")
    assert alone.status_code == 404


async def test_completeness_of_the_current_hour_counts_only_the_elapsed_part(
    client: httpx.AsyncClient,
    db_pool: asyncpg.Pool,
) -> None:
    [turbine] = await register(db_pool, 1)
    async with db_pool.acquire() as conn:
        now = await conn.fetchval("SELECT now()")
        # Ten healthy minutes at 1 Hz, the last of them just now.
        readings = make_series(turbine, now - timedelta(seconds=600), 600)
        await write_batch(conn, [accepted(r) for r in readings], [])
    # A window reaching an hour into the future: only the elapsed part is expected.
    start, end = now - timedelta(seconds=600), now + timedelta(hours=1)
    answer = await client.get(
        f"/v1/turbines/{turbine}/quality", params={"from": start.isoformat(), "to": end.isoformat()}
    )
    assert answer.status_code == 200, answer.text
    buckets = answer.json()["buckets"]
    stored = sum(b["stored"] for b in buckets)
    expected = sum(b["expected"] for b in buckets)
    assert stored == 600
    # Elapsed by the time the API asked the database: a few seconds more than 600.
    assert 600 <= expected < 630
    assert all(b["completeness"] > 0.95 for b in buckets if b["expected"] > 60)
