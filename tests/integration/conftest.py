"""Fixtures of the integration tests: the real database, broker and API in process."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import httpx
import pytest

from services.aggregator.app import create_app
from services.aggregator.config import Settings
from tests.conftest import authenticate, with_lifespan_state
from windpark.bootstrap import SetupSettings
from windpark.credentials import Scope as ApiScope


@pytest.fixture(scope="module")
async def client(
    prepared: SetupSettings, db_pool: asyncpg.Pool
) -> AsyncIterator[httpx.AsyncClient]:
    """The API, as a client holding a telemetry:read token (a reader, nothing more).
    A module that needs other rights declares its own ``client``."""
    app = create_app(Settings())
    async with app.router.lifespan_context(app) as state:
        transport = httpx.ASGITransport(app=with_lifespan_state(app, state))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            await authenticate(http, db_pool, ApiScope.TELEMETRY_READ)
            yield http
