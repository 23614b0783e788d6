"""Revocation: deleting an account, disabling it, or giving it a new password, secret or
scopes (``windpark users|clients …``, another process) ends the tokens it holds within
the API's token-version cache age, not when they expire."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any, cast

import asyncpg
import httpx
import jwt
import pytest
from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher

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
        fresh_version = await conn.fetchval(
            "SELECT token_version FROM api_users WHERE username = $1", name
        )
    assert tokens_version(fresh) == fresh_version != tokens_version(old_token)


def tokens_version(token: str) -> int:
    """The ``ver`` claim of a token (signature not checked: the API checks it)."""
    version: int = jwt.decode(token, options={"verify_signature": False})["ver"]
    return version


async def test_a_re_created_account_does_not_revive_the_old_ones_tokens(
    http: httpx.AsyncClient, db_pool: asyncpg.Pool
) -> None:
    """Delete then add the same name (how an admin resets an account): the new account's
    version is one the old account's tokens never carried, so they stay refused, and
    their scopes (from their claims) with them."""
    name, _, user_token = await _user_token(http, db_pool)
    client = await create_api_client(db_pool, Scope.ADMIN)
    client_token = await request_token(http, client)
    old_tokens = (user_token, client_token)
    for token in old_tokens:
        assert (await http.get("/v1/turbines", headers=bearer(token))).status_code == 200
    await asyncio.to_thread(windpark_cli, "users", "delete", name)
    await asyncio.to_thread(windpark_cli, "clients", "delete", client.client_id)
    for token in old_tokens:
        await _refused_after_s(http, token)

    secret = credentials.new_secret()
    hashed = await asyncio.to_thread(credentials.hash_secret, secret)
    async with db_pool.acquire() as conn:
        assert await credentials.add_user(conn, name, hashed, [Scope.TELEMETRY_READ])
        assert await credentials.add_client(conn, client.client_id, hashed, [Scope.TELEMETRY_READ])
    answer = await _login(http, name, secret)
    assert answer.status_code == 200, answer.text
    new_tokens = (
        answer.json()["access_token"],
        await request_token(http, replace(client, client_secret=secret)),
    )
    for old, new in zip(old_tokens, new_tokens, strict=True):
        # Once the API has read the re-created account (its new token passes), the old
        # account's token must still be refused.
        await _accepted_within_s(http, new, MAX_AGE_S + SLACK_S)
        assert (await http.get("/v1/turbines", headers=bearer(old))).status_code == 401
        assert tokens_version(new) != tokens_version(old)


async def _accepted_within_s(http: httpx.AsyncClient, token: str, deadline_s: float) -> None:
    deadline = time.monotonic() + deadline_s
    while (status := (await http.get("/v1/turbines", headers=bearer(token))).status_code) != 200:
        assert status == 401, status
        assert time.monotonic() < deadline, "the re-created account's token is still refused"
        await asyncio.sleep(0.05)


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
    async with db_pool.acquire() as conn:
        first = await credentials.live_token_version(conn, subject)
    assert first is not None
    answers = await asyncio.gather(*(versions.is_current(subject, first) for _ in range(50)))
    assert all(answers)
    assert acquired == 1
    async with db_pool.acquire() as conn:
        await credentials.set_user_disabled(conn, name, True)
    now[0] += 1.9  # within the age: the cached answer
    assert await versions.is_current(subject, first)
    assert acquired == 1
    now[0] += 0.2  # past it: read again, and refused
    assert not await versions.is_current(subject, first)
    async with db_pool.acquire() as conn:
        await credentials.set_user_disabled(conn, name, False)  # enabled again: a new version
        enabled = await credentials.live_token_version(conn, subject)
    assert enabled is not None
    assert enabled > first
    now[0] += 2.1
    assert not await versions.is_current(subject, first)
    assert await versions.is_current(subject, enabled)


ACCOUNT_KINDS = {
    "user": (
        credentials.add_user,
        credentials.get_user,
        credentials.set_user_password,
        credentials.rehash_user_password,
    ),
    "client": (
        credentials.add_client,
        credentials.get_client,
        credentials.set_client_secret,
        credentials.rehash_client_secret,
    ),
}


@pytest.mark.parametrize("kind", ACCOUNT_KINDS)
async def test_a_late_rehash_does_not_undo_a_new_password(db_pool: asyncpg.Pool, kind: str) -> None:
    """A login verified the old password (hashed with older parameters) and computed its
    upgrade; meanwhile the password was changed. The upgrade, written late, must not
    bring the old password back."""
    weak = PasswordHash([Argon2Hasher(time_cost=1, memory_cost=8 * 1024, parallelism=1)])
    old_secret, new_secret = credentials.new_secret(), credentials.new_secret()
    old_hash = weak.hash(old_secret)
    name = f"rehash-{uuid.uuid4().hex[:10]}"
    add, get, change, rehash = cast(Any, ACCOUNT_KINDS[kind])
    async with db_pool.acquire() as conn:
        assert await add(conn, name, old_hash, [Scope.TELEMETRY_READ])
    ok, upgraded = credentials.verify(old_secret, old_hash)
    assert ok
    assert upgraded is not None  # the weak parameters do ask for an upgrade
    async with db_pool.acquire() as conn:
        assert await change(conn, name, credentials.hash_secret(new_secret))
        assert not await rehash(conn, name, old_hash, upgraded)
        account = await get(conn, name)
    assert account is not None
    assert credentials.verify(new_secret, account.secret_hash)[0]
    assert not credentials.verify(old_secret, account.secret_hash)[0]

    # Over the hash it verified, the upgrade is written (and the version kept).
    async with db_pool.acquire() as conn:
        assert await change(conn, name, weak.hash(new_secret))
        current = await get(conn, name)
        assert current is not None
        ok, upgraded = credentials.verify(new_secret, current.secret_hash)
        assert ok
        assert upgraded is not None
        assert await rehash(conn, name, current.secret_hash, upgraded)
        after = await get(conn, name)
    assert after is not None
    assert after.secret_hash == upgraded
    assert after.token_version == current.token_version
