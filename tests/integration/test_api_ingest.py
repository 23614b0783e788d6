"""HTTP ingest against the real broker and database: valid readings reach the exchange
byte for byte, invalid ones are kept with their reasons, bodies are bounded, and the
API keeps serving reads while the broker is down."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import aio_pika
import asyncpg
import httpx
import orjson
import pytest
from aio_pika.abc import AbstractIncomingMessage, AbstractQueue, AbstractRobustConnection

from services.aggregator.app import create_app
from services.aggregator.config import Settings
from services.aggregator.registry_cache import RegistryCache
from tests.conftest import authenticate, new_turbine_id, with_lifespan_state
from tests.factories import make_payload
from windpark import contract, registry
from windpark.bootstrap import SetupSettings
from windpark.credentials import Scope as ApiScope
from windpark.settings import ApiBrokerSettings

DEADLINE_S = 15.0


async def eventually(check: Callable[[], Awaitable[bool]], timeout_s: float = DEADLINE_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout_s} s")
        await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def serve(settings: Settings, pool: asyncpg.Pool) -> AsyncIterator[httpx.AsyncClient]:
    """The API, as a client that may read and send readings of any turbine."""
    app = create_app(settings)
    async with app.router.lifespan_context(app) as state:
        transport = httpx.ASGITransport(app=with_lifespan_state(app, state))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            await authenticate(http, pool, ApiScope.TELEMETRY_READ, ApiScope.READINGS_WRITE)
            yield http


# Turbines this module posted readings for: their messages also reach the concentrator's
# queue, and are taken out of it when the module ends (see `client`).
POSTED: set[str] = set()


@pytest.fixture(scope="module")
async def client(
    prepared: SetupSettings, db_pool: asyncpg.Pool, amqp: AbstractRobustConnection
) -> AsyncIterator[httpx.AsyncClient]:
    # registry_refresh_s=0: a turbine registered by a test is seen at once.
    async with serve(Settings(registry_refresh_s=0), db_pool) as http:

        async def broker_ready() -> bool:
            return (await http.get("/readyz")).status_code == 200

        await eventually(broker_ready)
        yield http
    await take_back_posted(amqp)


async def take_back_posted(amqp: AbstractRobustConnection) -> None:
    """Remove this module's readings from the concentrator's queue, so that tests which
    count that queue's messages start from what they publish themselves."""
    mine = {contract.routing_key(tid) for tid in POSTED}
    channel = await amqp.channel()
    try:
        queue = await channel.get_queue(contract.QUEUE, ensure=True)
        for _ in range(10_000):
            message = await queue.get(no_ack=False, fail=False)
            if message is None:
                return
            if message.routing_key not in mine:
                # Someone else's: leave it, and everything behind it, where it was.
                await message.nack(requeue=True)
                return
            await message.ack()
    finally:
        await channel.close()


@pytest.fixture
async def tap(amqp: AbstractRobustConnection, turbine_id: str) -> AsyncIterator[AbstractQueue]:
    """A private queue bound to the turbine's routing key: sees what the API published."""
    channel = await amqp.channel()
    queue = await channel.declare_queue(exclusive=True, auto_delete=True)
    await queue.bind(contract.EXCHANGE, routing_key=contract.routing_key(turbine_id))
    try:
        yield queue
    finally:
        await channel.close()


async def next_message(queue: AbstractQueue) -> AbstractIncomingMessage:
    got: list[AbstractIncomingMessage] = []

    async def arrived() -> bool:
        message = await queue.get(no_ack=True, fail=False)
        if message is not None:
            got.append(message)
        return bool(got)

    await eventually(arrived)
    return got[0]


def payload_for(turbine_id: str, **overrides: Any) -> bytes:
    POSTED.add(turbine_id)
    now = datetime.now(UTC).replace(microsecond=0)
    return make_payload(turbine_id=turbine_id, ts=contract.format_ts(now), **overrides)


JSON = {"content-type": "application/json"}


# Accepted -------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/generador/", "/v1/readings"])
async def test_valid_reading_is_published_byte_for_byte(
    client: httpx.AsyncClient, tap: AbstractQueue, turbine_id: str, path: str
) -> None:
    # Spaces and key order are the sender's: the exact bytes must travel.
    raw = payload_for(turbine_id, seq=7).replace(b",", b", ")
    answer = await client.post(path, content=raw, headers=JSON)
    assert answer.status_code == 202, answer.text
    body = answer.json()
    assert body["status"] == "queued"
    assert body["turbine_id"] == turbine_id
    assert body["seq"] == 7
    assert datetime.fromisoformat(body["ts"]) == datetime.fromisoformat(
        orjson.loads(raw)["ts"].replace("Z", "+00:00")
    )
    assert body["outcome"] == "accepted"
    assert body["quality_flags"] == 0

    message = await next_message(tap)
    assert message.body == raw
    assert message.routing_key == contract.routing_key(turbine_id)
    assert message.message_id == body["message_id"]
    assert message.message_id is not None
    assert message.message_id.startswith("http:")
    assert message.content_type == contract.CONTENT_TYPE
    assert message.delivery_mode == aio_pika.DeliveryMode.PERSISTENT


async def test_flagged_reading_is_queued_with_its_flags(
    client: httpx.AsyncClient, tap: AbstractQueue, turbine_id: str
) -> None:
    # Full power in a calm: physically possible to send, suspicious to store.
    raw = payload_for(turbine_id, wind_speed_ms=5.0, power_kw=2000.0)
    answer = await client.post("/generador/", content=raw, headers=JSON)
    assert answer.status_code == 202, answer.text
    assert answer.json()["outcome"] == "flagged"
    assert answer.json()["flags"] == ["POWER_WIND_MISMATCH"]
    assert (await next_message(tap)).body == raw


async def test_turbine_provisioned_after_start_is_accepted(
    client: httpx.AsyncClient, db_pool: asyncpg.Pool, amqp: AbstractRobustConnection
) -> None:
    late = new_turbine_id("LATE")
    before = await client.post("/generador/", content=payload_for(late), headers=JSON)
    assert before.status_code == 422
    assert [r["code"] for r in before.json()["detail"]["reasons"]] == ["unknown_turbine"]

    async with db_pool.acquire() as conn:
        await registry.add_turbine(conn, late, model="E-82/2300")
    after = await client.post("/generador/", content=payload_for(late), headers=JSON)
    assert after.status_code == 202, after.text


async def test_registry_is_reread_at_most_once_per_interval(
    db_pool: asyncpg.Pool, turbine_id: str
) -> None:
    cache = RegistryCache(refresh_interval_s=3600)
    assert turbine_id in await cache.turbines(db_pool)
    newcomer = new_turbine_id()
    async with db_pool.acquire() as conn:
        await registry.add_turbine(conn, newcomer, model="E-82/2300")
    assert await cache.refresh(db_pool) is None  # too soon: no query
    assert newcomer not in await cache.turbines(db_pool)

    eager = RegistryCache(refresh_interval_s=0)
    await eager.turbines(db_pool)
    refreshed = await eager.refresh(db_pool)
    assert refreshed is not None
    assert newcomer in refreshed


# Rejected -------------------------------------------------------------------------------------


async def test_invalid_reading_is_rejected_and_kept_raw(
    client: httpx.AsyncClient, db_pool: asyncpg.Pool, tap: AbstractQueue, turbine_id: str
) -> None:
    raw = payload_for(turbine_id, seq=41, wind_speed_ms=99.0, temperature_c=None)
    started = datetime.now(UTC)
    answer = await client.post("/v1/readings", content=raw, headers=JSON)
    assert answer.status_code == 422, answer.text
    detail = answer.json()["detail"]
    assert detail["status"] == "rejected"
    codes = {r["code"] for r in detail["reasons"]}
    assert codes == {"missing_field", "wind_out_of_range"}
    assert {r["field"] for r in detail["reasons"]} == {"temperature_c", "wind_speed_ms"}
    assert all(r["message"] for r in detail["reasons"])

    async with db_pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT payload, reasons, details, source, seq, received_at, dedup_key "
            "FROM rejected_readings WHERE turbine_id = $1",
            turbine_id,
        )
    [row] = rows
    assert row["payload"] == raw
    assert row["source"] == "http"
    assert set(row["reasons"]) == codes
    assert row["seq"] == 41
    assert row["received_at"] >= started - timedelta(seconds=1)
    assert row["dedup_key"].startswith("http:")
    assert {d["code"] for d in orjson.loads(row["details"])} == codes
    # Nothing reached the broker.
    assert await tap.get(no_ack=True, fail=False) is None


async def test_same_bad_bytes_twice_are_two_rejects(
    client: httpx.AsyncClient, db_pool: asyncpg.Pool, turbine_id: str
) -> None:
    raw = payload_for(turbine_id, power_kw="lots")
    for _ in range(2):
        answer = await client.post("/generador/", content=raw, headers=JSON)
        assert answer.status_code == 422
        assert [r["code"] for r in answer.json()["detail"]["reasons"]] == ["wrong_type"]
    async with db_pool.acquire() as conn:
        count = await conn.fetchval(
            "SELECT count(*) FROM rejected_readings WHERE turbine_id = $1", turbine_id
        )
    assert count == 2


async def test_unknown_turbine_is_rejected(
    client: httpx.AsyncClient, db_pool: asyncpg.Pool
) -> None:
    stranger = new_turbine_id("NOBODY")
    answer = await client.post("/generador/", content=payload_for(stranger), headers=JSON)
    assert answer.status_code == 422
    assert [r["code"] for r in answer.json()["detail"]["reasons"]] == ["unknown_turbine"]
    async with db_pool.acquire() as conn:
        stored = await conn.fetchval(
            "SELECT reasons FROM rejected_readings WHERE turbine_id = $1", stranger
        )
    assert stored == ["unknown_turbine"]


async def test_garbage_is_rejected_not_a_server_error(
    client: httpx.AsyncClient, db_pool: asyncpg.Pool
) -> None:
    marker = new_turbine_id().encode()
    raw = b'{"v": 1, "power_kw": NaN, "x": "' + marker + b'"'
    answer = await client.post("/generador/", content=raw, headers=JSON)
    assert answer.status_code == 422
    assert answer.json()["detail"]["reasons"][0]["code"] == "malformed_json"
    async with db_pool.acquire() as conn:
        stored = await conn.fetchval(
            "SELECT count(*) FROM rejected_readings WHERE payload = $1 AND source = 'http'", raw
        )
    assert stored == 1


# Bounded bodies -------------------------------------------------------------------------------


async def test_oversized_body_with_length_is_refused(client: httpx.AsyncClient) -> None:
    answer = await client.post("/generador/", content=b" " * (64 * 1024 + 1), headers=JSON)
    assert answer.status_code == 413
    assert "65536" in answer.json()["detail"]


async def test_oversized_chunked_body_is_refused_without_reading_it_all(
    client: httpx.AsyncClient,
) -> None:
    sent = 0
    chunk = b" " * 8192

    async def endless() -> AsyncIterator[bytes]:
        nonlocal sent
        for _ in range(1000):  # 8 MB if nobody stops reading
            sent += len(chunk)
            yield chunk

    answer = await client.post("/v1/readings", content=endless(), headers=JSON)
    assert "content-length" not in answer.request.headers
    assert answer.request.headers["transfer-encoding"] == "chunked"
    assert answer.status_code == 413
    assert sent <= 64 * 1024 + 2 * len(chunk)


async def test_body_at_the_limit_is_read_and_judged(
    client: httpx.AsyncClient, turbine_id: str
) -> None:
    raw = payload_for(turbine_id)
    padded = raw + b" " * (64 * 1024 - len(raw))

    async def chunks() -> AsyncIterator[bytes]:
        for i in range(0, len(padded), 5000):
            yield padded[i : i + 5000]

    answer = await client.post("/generador/", content=chunks(), headers=JSON)
    # Not a 413: the validator judges it (the wire contract allows 16 KiB per message).
    assert answer.status_code == 422
    assert [r["code"] for r in answer.json()["detail"]["reasons"]] == ["oversized"]


async def test_non_json_content_type_is_refused(client: httpx.AsyncClient, turbine_id: str) -> None:
    answer = await client.post(
        "/generador/",
        content=payload_for(turbine_id),
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert answer.status_code == 415


async def test_ingest_outcomes_are_counted(client: httpx.AsyncClient, turbine_id: str) -> None:
    def value(text: str, sample: str) -> float:
        for line in text.splitlines():
            if line.startswith(sample + " "):
                return float(line.split()[-1])
        return 0.0

    queued = 'windpark_api_ingest_total{outcome="queued"}'
    reason = 'windpark_api_ingest_reject_reasons_total{code="unknown_turbine"}'
    before = (await client.get("/metrics")).text
    await client.post("/generador/", content=payload_for(turbine_id), headers=JSON)
    await client.post("/generador/", content=payload_for(new_turbine_id()), headers=JSON)
    after = (await client.get("/metrics")).text
    assert value(after, queued) == value(before, queued) + 1
    assert value(after, reason) == value(before, reason) + 1


# Broker down ----------------------------------------------------------------------------------


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


async def test_reads_go_on_and_posts_get_503_while_the_broker_is_down(
    prepared: SetupSettings, db_pool: asyncpg.Pool, turbine_id: str
) -> None:
    settings = Settings(
        broker=ApiBrokerSettings(port=closed_port(), vhost=prepared.broker.vhost),
        broker_retry_initial_s=0.05,
        broker_retry_max_s=0.2,
    )
    async with serve(settings, db_pool) as http:
        ready = await http.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["status"] == "not ready"
        assert ready.json()["checks"]["database"] == "ok"
        assert ready.json()["checks"]["broker"].startswith("down")

        latest = await http.get("/datos-generadores/")
        assert latest.status_code == 200
        assert turbine_id in {t["turbine_id"] for t in latest.json()["turbines"]}

        answer = await http.post("/generador/", content=payload_for(turbine_id), headers=JSON)
        assert answer.status_code == 503
        assert answer.headers["retry-after"].isdigit()
        assert "broker" in answer.json()["detail"]

        # An invalid reading needs no broker: it is still judged and kept.
        bad = await http.post("/generador/", content=payload_for(turbine_id, seq=-1), headers=JSON)
        assert bad.status_code == 422
    async with db_pool.acquire() as conn:
        rejects = await conn.fetchval(
            "SELECT count(*) FROM rejected_readings WHERE turbine_id = $1", turbine_id
        )
    assert rejects == 1


async def test_answers_never_leak_a_traceback(client: httpx.AsyncClient, turbine_id: str) -> None:
    # A reading that is valid JSON with absurd nesting must not surface internals.
    raw = b'{"turbine_id": "' + turbine_id.encode() + b'", "x": ' + b"[" * 5000 + b"]" * 5000 + b"}"
    answer = await client.post("/generador/", content=raw, headers=JSON)
    assert answer.status_code == 422
    assert "Traceback" not in answer.text
