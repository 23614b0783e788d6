"""Two different readings with the same (turbine, ts) are a conflict, not a duplicate: the
second is kept with its bytes and values. Through the real path: POST to the API, the
broker, the concentrator, the database, and back out through /v1/conflicts and /v1/quality.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx
import orjson
import pytest
from aio_pika.abc import AbstractRobustConnection

from services.aggregator.config import Settings as ApiSettings
from services.concentrator.main import Concentrator
from tests.factories import make_payload
from tests.integration.test_api_ingest import JSON, eventually, serve
from tests.integration.test_concentrator import publish_all, running_concentrator
from windpark import contract
from windpark.bootstrap import SetupSettings


@pytest.fixture(scope="module")
async def api(prepared: SetupSettings, db_pool: asyncpg.Pool) -> AsyncIterator[httpx.AsyncClient]:
    async with serve(ApiSettings(registry_refresh_s=0), db_pool) as http:

        async def broker_ready() -> bool:
            return (await http.get("/readyz")).status_code == 200

        await eventually(broker_ready)
        yield http


@pytest.fixture
async def concentrator(turbine_id: str) -> AsyncIterator[Concentrator]:
    """A concentrator started once the test's turbine is registered (it reads the registry
    at start)."""
    async with running_concentrator() as running:
        yield running


async def ledger(pool: asyncpg.Pool, table: str, turbine_id: str) -> int:
    async with pool.acquire() as conn:
        value = await conn.fetchval(
            f"SELECT count(*) FROM {table} WHERE turbine_id = $1", turbine_id
        )
    return int(value)


async def settled(pool: asyncpg.Pool, turbine_id: str, **want: int) -> None:
    """Wait until each ledger (readings, duplicate_readings, conflicting_readings) holds
    the wanted number of this turbine's rows; name the ledgers that do not."""
    tables = {
        "stored": "readings",
        "duplicates": "duplicate_readings",
        "conflicts": "conflicting_readings",
    }
    seen: dict[str, int] = {}

    async def reached() -> bool:
        for name, table in tables.items():
            seen[name] = await ledger(pool, table, turbine_id)
        return all(seen[name] == n for name, n in want.items())

    try:
        await eventually(reached)
    except AssertionError as exc:
        raise AssertionError(f"{turbine_id}: wanted {want}, the database holds {seen}") from exc


def reading_bytes(turbine_id: str, ts: datetime, **values: object) -> bytes:
    return make_payload(turbine_id=turbine_id, ts=contract.format_ts(ts), **values)


async def post(api: httpx.AsyncClient, path: str, raw: bytes) -> dict[str, object]:
    answer = await api.post(path, content=raw, headers=JSON)
    assert answer.status_code == 202, answer.text
    body: dict[str, object] = answer.json()
    return body


async def test_a_second_reading_with_the_key_of_a_stored_one_is_kept_as_a_conflict(
    api: httpx.AsyncClient,
    concentrator: Concentrator,
    db_pool: asyncpg.Pool,
    turbine_id: str,
) -> None:
    ts = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=30)
    first = reading_bytes(turbine_id, ts, seq=1, power_kw=1000.0, wind_speed_ms=9.0)
    await post(api, "/generador/", first)
    await settled(db_pool, turbine_id, stored=1)

    # Same turbine and ts, other values; spaces kept to show the bytes travel as sent.
    second = reading_bytes(turbine_id, ts, seq=2, power_kw=1180.0, wind_speed_ms=9.5).replace(
        b",", b", "
    )
    queued = await post(api, "/v1/readings", second)
    assert queued["status"] == "queued"
    assert "queued for storage" in str(queued["promise"])
    await settled(db_pool, turbine_id, stored=1, duplicates=0, conflicts=1)

    answer = await api.get(
        "/v1/conflicts",
        params={"turbine_id": turbine_id, "from": (ts - timedelta(minutes=1)).isoformat()},
    )
    assert answer.status_code == 200, answer.text
    [conflict] = answer.json()["conflicts"]
    assert base64.b64decode(conflict["payload_base64"]) == second
    assert conflict["payload_text"] == second.decode()
    assert conflict["message_id"] == queued["message_id"]
    # One prefix: the API's message id is the dedup key as it is.
    assert str(conflict["message_id"]).count("http:") == 1
    assert conflict["values"]["seq"] == 2
    assert conflict["values"]["power_kw"] == 1180.0
    assert conflict["values"]["wind_speed_ms"] == 9.5
    assert conflict["stored"]["seq"] == 1
    assert conflict["stored"]["power_kw"] == 1000.0
    assert set(conflict["differs"]) == {"seq", "power_kw", "wind_speed_ms"}
    assert datetime.fromisoformat(conflict["ts"]) == ts

    quality = await api.get(
        f"/v1/turbines/{turbine_id}/quality",
        params={"from": (ts - timedelta(minutes=1)).isoformat()},
    )
    assert quality.status_code == 200, quality.text
    totals = quality.json()["totals"]
    assert (totals["stored"], totals["conflicts"], totals["duplicates"]) == (1, 1, 0)
    assert totals["received"] == 2

    # The stored reading stays the one the API serves.
    readings = await api.get(
        f"/v1/turbines/{turbine_id}/readings",
        params={"from": ts.isoformat(), "to": (ts + timedelta(seconds=1)).isoformat()},
    )
    [stored] = readings.json()["readings"]
    assert stored["power_kw"] == 1000.0


async def test_the_same_reading_sent_again_is_a_duplicate_not_a_conflict(
    api: httpx.AsyncClient,
    concentrator: Concentrator,
    db_pool: asyncpg.Pool,
    turbine_id: str,
) -> None:
    ts = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=20)
    raw = reading_bytes(turbine_id, ts, seq=5)
    await post(api, "/generador/", raw)
    await settled(db_pool, turbine_id, stored=1)
    # The same bytes in a new POST (a new message id): identical values, a duplicate.
    await post(api, "/generador/", raw)
    await settled(db_pool, turbine_id, stored=1, duplicates=1, conflicts=0)
    # Same values in other bytes (key order and spacing): still the same reading.
    reordered = orjson.dumps(dict(reversed(orjson.loads(raw).items())))
    await post(api, "/v1/readings", reordered)
    await settled(db_pool, turbine_id, stored=1, duplicates=2, conflicts=0)


async def test_a_redelivered_conflict_is_kept_once_and_counted_as_a_duplicate(
    amqp: AbstractRobustConnection,
    concentrator: Concentrator,
    db_pool: asyncpg.Pool,
    turbine_id: str,
) -> None:
    ts = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=10)
    stored = reading_bytes(turbine_id, ts, seq=7, power_kw=500.0, wind_speed_ms=7.0)
    other = reading_bytes(turbine_id, ts, seq=8, power_kw=900.0, wind_speed_ms=8.5)
    await publish_all(amqp, [(turbine_id, stored, f"{turbine_id}:7:0")])
    await settled(db_pool, turbine_id, stored=1)
    await publish_all(amqp, [(turbine_id, other, f"{turbine_id}:8:0")])
    await settled(db_pool, turbine_id, stored=1, conflicts=1)
    # A redelivery of both messages (same ids, as after a lost ack).
    await publish_all(
        amqp, [(turbine_id, stored, f"{turbine_id}:7:0"), (turbine_id, other, f"{turbine_id}:8:0")]
    )
    await settled(db_pool, turbine_id, stored=1, conflicts=1, duplicates=2)
    async with db_pool.acquire() as conn:
        keys = await conn.fetch(
            "SELECT dedup_key FROM duplicate_readings WHERE turbine_id = $1 ORDER BY 1", turbine_id
        )
        kept = await conn.fetchrow(
            "SELECT dedup_key, payload FROM conflicting_readings WHERE turbine_id = $1", turbine_id
        )
    assert [k["dedup_key"] for k in keys] == [f"amqp:{turbine_id}:7:0", f"amqp:{turbine_id}:8:0"]
    assert kept is not None
    assert kept["dedup_key"] == f"amqp:{turbine_id}:8:0"
    assert bytes(kept["payload"]) == other
