"""Fixtures shared by the test layers.

Unit tests request none of the service fixtures, so they run without servers.
Integration and end-to-end tests use a database and a broker vhost of their own
(``windpark_test`` and ``windpark-test`` on windpark's TLS broker) so that a running
``make run`` is never touched; the database is recreated once per session from the
real migrations. The services under test connect as their own broker users; the
harness itself (purging queues, tapping the exchange) connects as ``windpark-admin``.
Turbines made by a test get a broker user of their own, deleted afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

# Before any settings class is instantiated, in this process and in the services the
# end-to-end tests start.
os.environ.setdefault("WINDPARK_DB__NAME", "windpark_test")
os.environ.setdefault("WINDPARK_BROKER__VHOST", "windpark-test")
os.environ.setdefault("WINDPARK_ENVIRONMENT", "test")

import aio_pika
import asyncpg
import httpx
import pytest
from aio_pika.abc import AbstractRobustConnection
from starlette.types import ASGIApp, Receive, Send
from starlette.types import Scope as AsgiScope

from services.aggregator import tokens
from services.aggregator.config import Settings as ApiSettings
from services.aggregator.state import STATE_KEY, AppState
from windpark import broker_admin, contract, credentials, registry
from windpark.amqp_connection import connect_robust
from windpark.bootstrap import SetupSettings, drop_database, setup
from windpark.broker_admin import BrokerAdmin, Credentials
from windpark.credentials import Scope


@pytest.fixture(scope="session")
def setup_settings() -> SetupSettings:
    return SetupSettings(park_size=0)


@pytest.fixture(scope="session")
async def prepared(setup_settings: SetupSettings) -> SetupSettings:
    """A fresh test database at the head migration and a declared, empty topology."""
    await drop_database(setup_settings)
    await setup(setup_settings)
    connection = await aio_pika.connect(
        setup_settings.broker.url(), ssl_context=setup_settings.broker.ssl_context()
    )
    async with connection:
        channel = await connection.channel()
        for name in (contract.QUEUE, contract.DEAD_LETTER_QUEUE):
            queue = await channel.get_queue(name, ensure=True)
            await queue.purge()
    return setup_settings


@pytest.fixture(scope="session")
async def db_pool(prepared: SetupSettings) -> AsyncIterator[asyncpg.Pool]:
    pool = await asyncpg.create_pool(prepared.db.dsn(), min_size=1, max_size=5)
    assert pool is not None
    async with pool:
        yield pool


# Branch-internal tests: a test of behaviour holds on both rollup engines; a test of one
# engine's internals (the Apache build's tables that windpark writes, the community
# license's continuous aggregates) says so with @pytest.mark.usefixtures("apache_only") or
# ("community_only") and is skipped, with the reason, on a server of the other license.


@pytest.fixture(scope="session")
async def timescaledb_license(db_pool: asyncpg.Pool) -> str:
    """The test database's TimescaleDB license: ``apache`` or ``timescale`` (community)."""
    async with db_pool.acquire() as conn:
        return str(await conn.fetchval("SHOW timescaledb.license"))


@pytest.fixture
def apache_only(timescaledb_license: str) -> None:
    if timescaledb_license != "apache":
        pytest.skip("internals of the Apache build's rollup engine (tables windpark writes)")


@pytest.fixture
def community_only(timescaledb_license: str) -> None:
    if timescaledb_license != "timescale":
        pytest.skip("internals of the community license's rollup engine (continuous aggregates)")


@pytest.fixture(scope="session")
async def amqp(prepared: SetupSettings) -> AsyncIterator[AbstractRobustConnection]:
    connection = await connect_robust(prepared.broker)
    async with connection:
        yield connection


def new_turbine_id(prefix: str = "T") -> str:
    """A turbine id no other test uses, so tests never depend on each other's rows."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@pytest.fixture
async def turbine_id(db_pool: asyncpg.Pool) -> str:
    """A freshly registered turbine (default model)."""
    tid = new_turbine_id()
    async with db_pool.acquire() as conn:
        await registry.add_turbine(conn, tid, model="E-82/2300")
    return tid


@contextlib.asynccontextmanager
async def turbine_identity(settings: SetupSettings, turbine_id: str) -> AsyncIterator[Credentials]:
    """A broker user for a test turbine, as `windpark turbines add` makes it; removed after."""
    async with BrokerAdmin.open(settings.broker) as admin:
        credentials = await broker_admin.provision_turbine(
            admin, settings.broker.vhost, turbine_id, settings.broker.secrets_dir
        )
        try:
            yield credentials
        finally:
            await admin.delete_user(turbine_id)
            (settings.broker.secrets_dir / turbine_id).unlink(missing_ok=True)


@contextlib.asynccontextmanager
async def provisioned_turbines(
    settings: SetupSettings, turbine_ids: list[str], *, model: str = "E-82/2300"
) -> AsyncIterator[list[Credentials]]:
    """Registry rows and broker users for a test's own turbines (what `windpark turbines
    add` makes), so generators can log in as them; the users are removed afterwards."""
    conn = await asyncpg.connect(settings.db.dsn())
    try:
        for tid in turbine_ids:
            await registry.add_turbine(conn, tid, model=model)
    finally:
        await conn.close()
    async with contextlib.AsyncExitStack() as stack:
        yield [
            await stack.enter_async_context(turbine_identity(settings, tid)) for tid in turbine_ids
        ]


@pytest.fixture
async def turbine_credentials(
    prepared: SetupSettings, turbine_id: str
) -> AsyncIterator[Credentials]:
    """Broker credentials of the ``turbine_id`` fixture's turbine."""
    async with turbine_identity(prepared, turbine_id) as credentials:
        yield credentials


# API credentials -----------------------------------------------------------------------------
# Tests that call the API authenticate like any client: a client row in the test database
# (Argon2id hash, as `windpark clients add` makes it), then a token from POST /v1/token,
# or, where no app runs, a token signed with the API's own key.


@dataclass(frozen=True, slots=True)
class ApiClientCredentials:
    client_id: str
    client_secret: str


async def create_api_client(
    pool: asyncpg.Pool, *scopes: Scope, turbine_id: str | None = None
) -> ApiClientCredentials:
    """A new API client with these scopes (and turbine binding), for this test only."""
    client_id = f"test-{uuid.uuid4().hex[:12]}"
    secret = credentials.new_secret()
    hashed = await asyncio.to_thread(credentials.hash_secret, secret)
    async with pool.acquire() as conn:
        await credentials.add_client(conn, client_id, hashed, scopes, turbine_id=turbine_id)
    return ApiClientCredentials(client_id, secret)


async def request_token(http: httpx.AsyncClient, client: ApiClientCredentials) -> str:
    answer = await http.post(
        "/v1/token",
        data={
            "grant_type": "client_credentials",
            "client_id": client.client_id,
            "client_secret": client.client_secret,
        },
    )
    assert answer.status_code == 200, answer.text
    token: str = answer.json()["access_token"]
    return token


async def authenticate(
    http: httpx.AsyncClient, pool: asyncpg.Pool, *scopes: Scope, turbine_id: str | None = None
) -> str:
    """Give ``http`` (a client of the app under test) a bearer token with these scopes."""
    token = await request_token(http, await create_api_client(pool, *scopes, turbine_id=turbine_id))
    http.headers["Authorization"] = f"Bearer {token}"
    return token


def sign_token(
    subject: str,
    *scopes: Scope,
    version: int,
    turbine_id: str | None = None,
    now: datetime | None = None,
) -> str:
    """A token signed with the key the API under test uses (WINDPARK_API__*, or the key file
    `windpark setup` made), as POST /v1/token would issue it to an account whose token
    version is ``version``."""
    api = ApiSettings().api
    return tokens.issue(
        tokens.KeyRing.from_settings(api),
        tokens.TokenPolicy.from_settings(api),
        subject=subject,
        scopes=scopes,
        now=now or datetime.now(UTC),
        version=version,
        turbine_id=turbine_id,
    )


@pytest.fixture
def api_token(db_pool: asyncpg.Pool) -> Callable[..., Awaitable[str]]:
    """``await api_token(Scope.TELEMETRY_READ, turbine_id=None)``: a token of a new client."""

    async def mint(*scopes: Scope, turbine_id: str | None = None) -> str:
        client = await create_api_client(db_pool, *scopes, turbine_id=turbine_id)
        subject = credentials.subject_of("client", client.client_id)
        async with db_pool.acquire() as conn:
            version = await credentials.live_token_version(conn, subject)
        assert version is not None
        return sign_token(subject, *scopes, version=version, turbine_id=turbine_id)

    return mint


async def broker_settled(state: Mapping[str, Any] | None) -> None:
    """Let the app's broker link finish connecting before the test (and so the shutdown)
    runs: an AMQPS handshake cancelled half-way leaves aio-pika coroutines behind, which
    fail a later test as unraisable exceptions (and can hang the session's teardown)."""
    assert state is not None
    app_state = state[STATE_KEY]
    assert isinstance(app_state, AppState)
    assert await app_state.broker.wait_connected(15), app_state.broker.last_error


def with_lifespan_state(app: ASGIApp, state: Mapping[str, Any] | None) -> ASGIApp:
    """Hand the lifespan's state to every request, as uvicorn does (httpx's ASGI transport
    runs no lifespan)."""

    async def wrapped(scope: AsgiScope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            scope = {**scope, "state": dict(state or {})}
        await app(scope, receive, send)

    return wrapped
