"""Fixtures shared by the test layers.

Unit tests request none of the service fixtures, so they run without servers.
Integration and end-to-end tests use a database and a broker vhost of their own
(``windpark_test`` and ``windpark-test``) so that a running ``make run`` is never
touched; the database is recreated once per session from the real migrations.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator

# Before any settings class is instantiated, in this process and in the services the
# end-to-end tests start.
os.environ.setdefault("WINDPARK_DB__NAME", "windpark_test")
os.environ.setdefault("WINDPARK_BROKER__VHOST", "windpark-test")
os.environ.setdefault("WINDPARK_ENVIRONMENT", "test")

import aio_pika
import asyncpg
import pytest
from aio_pika.abc import AbstractRobustConnection

from windpark import contract, registry
from windpark.bootstrap import SetupSettings, drop_database, setup


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


@pytest.fixture(scope="session")
async def amqp(prepared: SetupSettings) -> AsyncIterator[AbstractRobustConnection]:
    connection = await aio_pika.connect_robust(
        prepared.broker.url(), ssl_context=prepared.broker.ssl_context()
    )
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
