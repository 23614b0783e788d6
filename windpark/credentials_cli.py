"""``windpark users …`` and ``windpark clients …``: who may ask the API for tokens.

Passwords and secrets are shown once, when they are made, and stored only as Argon2id
hashes. Deleting or disabling an account, or giving it a new password, secret or scopes,
revokes the tokens it holds: the API refuses them within
``WINDPARK_API__TOKEN_VERSION_MAX_AGE_S`` (2 s by default; migration 0008).
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import TextIO

import asyncpg

from windpark import credentials
from windpark.credentials import Account, CredentialsError, Scope
from windpark.db import Connection
from windpark.settings import DatabaseSettings, WindparkSettings


class CliSettings(WindparkSettings):
    db: DatabaseSettings = DatabaseSettings()


def scopes_from_args(values: Iterable[str]) -> tuple[Scope, ...]:
    """``--scope a --scope b`` and ``--scope a,b`` alike."""
    return credentials.parse_scopes(
        part.strip() for value in values for part in value.split(",") if part.strip()
    )


def read_secret(stdin: TextIO) -> str:
    # One line, as `printf %s "$PW" | windpark users add … --password-stdin` sends it.
    return stdin.readline().rstrip("\r\n")


async def _with_connection(work: Callable[[Connection], Awaitable[int]]) -> int:
    conn = await asyncpg.connect(CliSettings().db.dsn())
    try:
        return await work(conn)
    finally:
        await conn.close()


def _fail(message: str) -> int:
    print(f"windpark: {message}", file=sys.stderr)
    return 2


# Said after every change that revokes the account's tokens.
_REVOKED = "its tokens issued before are revoked"


def _show(account: Account) -> str:
    state = "disabled" if account.disabled else "enabled"
    scopes = " ".join(s.value for s in account.scopes) or "-"
    turbine = f"\tturbine={account.turbine_id}" if account.turbine_id else ""
    return f"{account.name}\t{state}\t{scopes}{turbine}\t{account.created_at:%Y-%m-%d %H:%M:%S%z}"


async def _set_scopes(
    kind: str,
    name: str,
    scopes: Sequence[str],
    store: Callable[[Connection, str, Iterable[Scope]], Awaitable[bool]],
) -> int:
    try:
        parsed = scopes_from_args(scopes)
    except CredentialsError as exc:
        return _fail(str(exc))

    async def work(conn: Connection) -> int:
        try:
            changed = await store(conn, name, parsed)
        except asyncpg.CheckViolationError:
            return _fail(f"{kind} {name!r} is bound to a turbine: keep readings:write")
        if not changed:
            return _fail(f"no {kind} {name!r}")
        shown = " ".join(s.value for s in parsed) or "-"
        print(f"{kind} {name}: scopes now {shown}; {_REVOKED}")
        return 0

    return await _with_connection(work)


# Users ---------------------------------------------------------------------------------------


async def add_user(name: str, scopes: Sequence[str], *, password_stdin: bool) -> int:
    try:
        credentials.check_name("user name", name)
        parsed = scopes_from_args(scopes)
        password = read_secret(sys.stdin) if password_stdin else credentials.new_secret()
        hashed = await asyncio.to_thread(credentials.hash_secret, password)
    except CredentialsError as exc:
        return _fail(str(exc))

    async def work(conn: Connection) -> int:
        if not await credentials.add_user(conn, name, hashed, parsed):
            return _fail(f"user {name!r} exists (`windpark users password {name}` resets it)")
        print(f"user {name} created with scopes: {' '.join(s.value for s in parsed) or '-'}")
        if not password_stdin:
            print(f"password (shown this once): {password}")
        return 0

    return await _with_connection(work)


async def set_user_password(name: str, *, password_stdin: bool) -> int:
    try:
        password = read_secret(sys.stdin) if password_stdin else credentials.new_secret()
        hashed = await asyncio.to_thread(credentials.hash_secret, password)
    except CredentialsError as exc:
        return _fail(str(exc))

    async def work(conn: Connection) -> int:
        if not await credentials.set_user_password(conn, name, hashed):
            return _fail(f"no user {name!r}")
        print(f"user {name}: password changed; {_REVOKED}")
        if not password_stdin:
            print(f"password (shown this once): {password}")
        return 0

    return await _with_connection(work)


async def set_user_scopes(name: str, scopes: Sequence[str]) -> int:
    return await _set_scopes("user", name, scopes, credentials.set_user_scopes)


async def list_users() -> int:
    async def work(conn: Connection) -> int:
        for account in await credentials.list_users(conn):
            print(_show(account))
        return 0

    return await _with_connection(work)


async def set_user_disabled(name: str, disabled: bool) -> int:
    async def work(conn: Connection) -> int:
        if not await credentials.set_user_disabled(conn, name, disabled):
            return _fail(f"no user {name!r}")
        print(f"user {name} {'disabled; ' + _REVOKED if disabled else 'enabled'}")
        return 0

    return await _with_connection(work)


async def delete_user(name: str) -> int:
    async def work(conn: Connection) -> int:
        if not await credentials.delete_user(conn, name):
            return _fail(f"no user {name!r}")
        print(f"user {name} deleted; {_REVOKED}")
        return 0

    return await _with_connection(work)


# Clients -------------------------------------------------------------------------------------


async def add_client(client_id: str, scopes: Sequence[str], *, turbine_id: str | None) -> int:
    secret = credentials.new_secret()
    try:
        credentials.check_name("client id", client_id)
        parsed = scopes_from_args(scopes)
        hashed = await asyncio.to_thread(credentials.hash_secret, secret)
    except CredentialsError as exc:
        return _fail(str(exc))

    async def work(conn: Connection) -> int:
        try:
            created = await credentials.add_client(
                conn, client_id, hashed, parsed, turbine_id=turbine_id
            )
        except CredentialsError as exc:
            return _fail(str(exc))
        except asyncpg.ForeignKeyViolationError:
            return _fail(f"turbine {turbine_id!r} is not registered (`windpark turbines add`)")
        if not created:
            return _fail(f"client {client_id!r} exists (`windpark clients secret` renews it)")
        bound = f", bound to turbine {turbine_id}" if turbine_id else ""
        print(f"client {client_id} created with scopes: {' '.join(s.value for s in parsed)}{bound}")
        print(f"client_secret (shown this once): {secret}")
        return 0

    return await _with_connection(work)


async def new_client_secret(client_id: str) -> int:
    secret = credentials.new_secret()
    hashed = await asyncio.to_thread(credentials.hash_secret, secret)

    async def work(conn: Connection) -> int:
        if not await credentials.set_client_secret(conn, client_id, hashed):
            return _fail(f"no client {client_id!r}")
        print(f"client {client_id}: {_REVOKED}; new client_secret (shown this once): {secret}")
        return 0

    return await _with_connection(work)


async def set_client_scopes(client_id: str, scopes: Sequence[str]) -> int:
    return await _set_scopes("client", client_id, scopes, credentials.set_client_scopes)


async def list_clients() -> int:
    async def work(conn: Connection) -> int:
        for account in await credentials.list_clients(conn):
            print(_show(account))
        return 0

    return await _with_connection(work)


async def set_client_disabled(client_id: str, disabled: bool) -> int:
    async def work(conn: Connection) -> int:
        if not await credentials.set_client_disabled(conn, client_id, disabled):
            return _fail(f"no client {client_id!r}")
        print(f"client {client_id} {'disabled; ' + _REVOKED if disabled else 'enabled'}")
        return 0

    return await _with_connection(work)


async def delete_client(client_id: str) -> int:
    async def work(conn: Connection) -> int:
        if not await credentials.delete_client(conn, client_id):
            return _fail(f"no client {client_id!r}")
        print(f"client {client_id} deleted; {_REVOKED}")
        return 0

    return await _with_connection(work)
