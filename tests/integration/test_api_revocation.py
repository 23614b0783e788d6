"""Revocation: deleting an account, disabling it, or giving it a new password, secret or
scopes (``windpark users|clients …``, another process) ends the tokens it holds within
the API's token-version cache age, not when they expire."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any, cast

import asyncpg
import httpx
import pytest

from services.aggregator.config import Settings
from services.aggregator.revocation import TokenVersions
from tests.conftest import create_api_client, request_token
from tests.integration.test_api_auth import (
    _add_user,
    _login,
    bearer,
    serve,
    unique_address,
    windpark_cli,
)
from windpark import credentials
from windpark.bootstrap import SetupSettings
from windpark.credentials import Scope

MAX_AGE_S = Settings().api.token_version_max_age_s
# What a request and the loop add to the cache's age, at most, on this machine.
SLACK_S = 1.0


@pytest.fixture(scope="module")
async def http(prepared: SetupSettings) -> AsyncIterator[httpx.AsyncClient]:
    async with serve(address=unique_address()) as client:
        yield client


async def _refused_after_s(http: httpx.AsyncClient, token: str) -> float:
    """Seconds until the token gets 401, polled; fails past the cache age and some slack."""
    started = time.monotonic()
    deadline = started + MAX_AGE_S + SLACK_S
    while True:
        status = (await http.get("/v1/turbines", headers=bearer(token))).status_code
        elapsed = time.monotonic() - started
        if status == 401:
            return elapsed
        assert status == 200, status
        assert time.monotonic() < deadline, f"still accepted {elapsed:.2f} s after the change"
        await asyncio.sleep(0.05)


async def _user_token(http: httpx.AsyncClient, pool: asyncpg.Pool) -> tuple[str, str, str]:
    name, password = await _add_user(pool, Scope.TELEMETRY_READ)
    answer = await _login(http, name, password)
    assert answer.status_code == 200, answer.text
    return name, password, answer.json()["access_token"]


CHANGES = {
    "user-delete": ("users", "delete"),
    "user-password": ("users", "password"),
    "user-scopes": ("users", "scopes", "--scope", "telemetry:read,alerts:manage"),
    "user-disable": ("users", "disable"),
    "client-delete": ("clients", "delete"),
    "client-secret": ("clients", "secret"),
    "client-scopes": ("clients", "scopes", "--scope", "alerts:manage"),
    "client-disable": ("clients", "disable"),
}


@pytest.mark.parametrize("change", CHANGES)
async def test_an_account_change_revokes_its_tokens(
    http: httpx.AsyncClient, db_pool: asyncpg.Pool, change: str
) -> None:
    command, verb, *rest = CHANGES[change]
    if command == "users":
        name, _, token = await _user_token(http, db_pool)
    else:
        client = await create_api_client(db_pool, Scope.TELEMETRY_READ)
        name, token = client.client_id, await request_token(http, client)
    _, _, bystander = await _user_token(http, db_pool)
    assert (await http.get("/v1/turbines", headers=bearer(token))).status_code == 200

    out = await asyncio.to_thread(windpark_cli, command, verb, name, *rest)
    assert "revoked" in out
    await _refused_after_s(http, token)
    # Only that account's tokens.
    assert (await http.get("/v1/turbines", headers=bearer(bystander))).status_code == 200


async def test_a_new_password_gives_tokens_that_work(
    http: httpx.AsyncClient, db_pool: asyncpg.Pool
) -> None:
    name, old_password, old_token = await _user_token(http, db_pool)
    new_password = f"new-{uuid.uuid4().hex}"
    await asyncio.to_thread(
        windpark_cli, "users", "password", name, "--password-stdin", stdin=new_password + "\n"
    )
    await _refused_after_s(http, old_token)
    assert (await _login(http, name, old_password)).status_code == 400
    answer = await _login(http, name, new_password)
    assert answer.status_code == 200
    fresh = answer.json()["access_token"]
    assert (await http.get("/v1/turbines", headers=bearer(fresh))).status_code == 200
    async with db_pool.acquire() as conn:
        version = await conn.fetchval(
            "SELECT token_version FROM api_users WHERE username = $1", name
        )
    assert version == 2


async def test_the_cache_answers_for_max_age_then_reads_again(db_pool: asyncpg.Pool) -> None:
    """The bound itself: what was read is trusted for max_age_s and no longer; requests
    that arrive together for an unknown subject share one read."""
    name, _ = await _add_user(db_pool, Scope.TELEMETRY_READ)
    subject = credentials.subject_of("user", name)
    now = [100.0]
    acquired = 0

    class CountingPool:
        def acquire(self) -> Any:
            nonlocal acquired
            acquired += 1
            return db_pool.acquire()

    versions = TokenVersions(
        cast(asyncpg.Pool, CountingPool()), max_age_s=2.0, clock=lambda: now[0]
    )
    answers = await asyncio.gather(*(versions.is_current(subject, 1) for _ in range(50)))
    assert all(answers)
    assert acquired == 1
    async with db_pool.acquire() as conn:
        await credentials.set_user_disabled(conn, name, True)
    now[0] += 1.9  # within the age: the cached answer
    assert await versions.is_current(subject, 1)
    assert acquired == 1
    now[0] += 0.2  # past it: read again, and refused
    assert not await versions.is_current(subject, 1)
    async with db_pool.acquire() as conn:
        await credentials.set_user_disabled(conn, name, False)  # enabled again: version 3
    now[0] += 2.1
    assert not await versions.is_current(subject, 1)
    assert await versions.is_current(subject, 3)
