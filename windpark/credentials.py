"""Who may call the HTTP API: people (``api_users``) and machines (``api_clients``).

Passwords and client secrets are stored as Argon2id hashes only (pwdlib), with OWASP's
minimum parameters: 19 MiB of memory, 2 passes, 1 lane. A hash made with other
parameters is replaced at the next successful login (``verify``). Hashing is CPU work
of ~30 ms: async callers run it in a thread.

The SQL here is shared by ``windpark users|clients`` and the API's token endpoint.

Revocation: each account has a ``token_version`` (migration 0008) that every token
carries as its ``ver`` claim. A change that should end the sessions already open (a new
password or secret, other scopes, disabling) bumps it, and so does deletion (the row is
gone), so the API refuses the old tokens at its next version check
(``services/aggregator/revocation.py``). Versions are drawn from one sequence for all
accounts (``token_version_seq``): a deleted and re-created name gets a version no token
of the old account carries. Upgrading a hash at login keeps the version: the secret is
the same, and the upgrade is written only over the hash it verified, never over a
password changed meanwhile.
"""

from __future__ import annotations

import functools
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Final

import asyncpg
from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher

from windpark.db import Connection


class Scope(StrEnum):
    """What a token lets its bearer do. ``admin`` implies every other scope."""

    TELEMETRY_READ = "telemetry:read"  # every GET of data: seed paths, /v1, metrics
    READINGS_WRITE = "readings:write"  # POST a reading; a client may be bound to one turbine
    ALERTS_MANAGE = "alerts:manage"  # reserved for alert rules and acknowledgements
    ADMIN = "admin"


SCOPE_DESCRIPTIONS: Final = {
    Scope.TELEMETRY_READ: "read latest values, aggregates, history, quality and metrics",
    Scope.READINGS_WRITE: "send readings (a client bound to a turbine: that turbine's only)",
    Scope.ALERTS_MANAGE: "manage alert rules and acknowledge alerts",
    Scope.ADMIN: "everything",
}

# User names and client ids: what a person can type, and what fits a token's `sub`.
NAME_RE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}")
# Longer inputs are not hashed at all (Argon2 would, slowly): nobody's password is this long.
MAX_SECRET_CHARS: Final = 1024

# Migration 0008: the one source of token versions, for users and clients alike.
VERSIONS_SEQUENCE: Final = "token_version_seq"

HASHER: Final = PasswordHash([Argon2Hasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)])


# Checked against when the user does not exist, so that a wrong name costs as much time
# as a wrong password and response times do not reveal which names exist.
@functools.cache
def _dummy_hash() -> str:
    return HASHER.hash(secrets.token_urlsafe(16))


class CredentialsError(ValueError):
    """A name, scope or turbine that cannot be stored."""


def parse_scopes(values: Iterable[str]) -> tuple[Scope, ...]:
    """Known scopes, deduplicated, in a stable order; CredentialsError for anything else."""
    scopes = set()
    for value in values:
        try:
            scopes.add(Scope(value))
        except ValueError:
            known = ", ".join(s.value for s in Scope)
            raise CredentialsError(f"unknown scope {value!r} (known: {known})") from None
    return tuple(s for s in Scope if s in scopes)


def check_name(kind: str, name: str) -> str:
    if not NAME_RE.fullmatch(name):
        raise CredentialsError(
            f"invalid {kind} {name!r}: 1-64 letters, digits, '_', '.', '@' or '-',"
            " starting with a letter or digit"
        )
    return name


def new_secret() -> str:
    """A password or client secret for someone who did not choose one: 192 random bits."""
    return secrets.token_urlsafe(24)


def hash_secret(secret: str) -> str:
    if not secret:
        raise CredentialsError("an empty password or secret cannot be stored")
    if len(secret) > MAX_SECRET_CHARS:
        raise CredentialsError(f"passwords and secrets are at most {MAX_SECRET_CHARS} characters")
    return HASHER.hash(secret)


def verify(secret: str, stored_hash: str | None) -> tuple[bool, str | None]:
    """(matches, new hash to store or None). ``stored_hash=None`` (no such user) costs the
    same time and never matches."""
    if len(secret) > MAX_SECRET_CHARS:
        return False, None
    if stored_hash is None:
        HASHER.verify(secret, _dummy_hash())
        return False, None
    return HASHER.verify_and_update(secret, stored_hash)


@dataclass(frozen=True, slots=True)
class Account:
    """A user or a client as the token endpoint and the CLI see it."""

    name: str
    secret_hash: str
    scopes: tuple[Scope, ...]
    disabled: bool
    created_at: datetime
    # Clients only: the turbine whose readings this client may send.
    turbine_id: str | None = None
    # Tokens carry it (claim `ver`); a token with another version is refused.
    token_version: int = 1


@dataclass(frozen=True, slots=True)
class _Table:
    """Where one kind of account lives: users and clients differ only in names."""

    name: str
    key: str
    hash_column: str
    extra: tuple[str, ...] = ()

    @property
    def columns(self) -> str:
        return ", ".join(
            (
                self.key,
                self.hash_column,
                "scopes",
                "disabled",
                "created_at",
                "token_version",
                *self.extra,
            )
        )


_USERS: Final = _Table("api_users", key="username", hash_column="password_hash")
_CLIENTS: Final = _Table(
    "api_clients", key="client_id", hash_column="secret_hash", extra=("turbine_id",)
)


def _account(row: asyncpg.Record, table: _Table) -> Account:
    return Account(
        name=row[table.key],
        secret_hash=row[table.hash_column],
        scopes=parse_scopes(row["scopes"]),
        disabled=row["disabled"],
        created_at=row["created_at"],
        turbine_id=row["turbine_id"] if "turbine_id" in table.extra else None,
        token_version=row["token_version"],
    )


async def _get(conn: Connection, table: _Table, name: str) -> Account | None:
    row = await conn.fetchrow(
        f"SELECT {table.columns} FROM {table.name} WHERE {table.key} = $1", name
    )
    return None if row is None else _account(row, table)


async def _list(conn: Connection, table: _Table) -> list[Account]:
    rows = await conn.fetch(f"SELECT {table.columns} FROM {table.name} ORDER BY {table.key}")
    return [_account(r, table) for r in rows]


async def _set(conn: Connection, table: _Table, name: str, column: str, value: object) -> bool:
    """Set one column of one account and bump its token version, so the tokens issued
    before stop working; False when there is no such account."""
    # A fresh value of the shared sequence, never a +1: see the module docstring.
    status = await conn.execute(
        f"UPDATE {table.name} SET {column} = $2,"
        f" token_version = nextval('{VERSIONS_SEQUENCE}') WHERE {table.key} = $1",
        name,
        value,
    )
    return status == "UPDATE 1"


async def _rehash(conn: Connection, table: _Table, name: str, verified: str, new: str) -> bool:
    """Replace the hash ``verified`` was checked against by ``new`` (the same secret under
    stronger parameters; the version stays). False, and nothing written, when the stored
    hash is no longer ``verified``: the password or secret changed since it was read, and
    the new one must stay."""
    status = await conn.execute(
        f"UPDATE {table.name} SET {table.hash_column} = $3"
        f" WHERE {table.key} = $1 AND {table.hash_column} = $2",
        name,
        verified,
        new,
    )
    return status == "UPDATE 1"


async def _delete(conn: Connection, table: _Table, name: str) -> bool:
    status = await conn.execute(f"DELETE FROM {table.name} WHERE {table.key} = $1", name)
    return status == "DELETE 1"


# Users ---------------------------------------------------------------------------------------


async def add_user(
    conn: Connection, username: str, password_hash: str, scopes: Iterable[Scope]
) -> bool:
    """True if created, False if the name is taken (nothing changes then)."""
    status = await conn.execute(
        "INSERT INTO api_users (username, password_hash, scopes) VALUES ($1, $2, $3)"
        " ON CONFLICT (username) DO NOTHING",
        check_name("user name", username),
        password_hash,
        [s.value for s in scopes],
    )
    return status.endswith(" 1")


async def get_user(conn: Connection, username: str) -> Account | None:
    return await _get(conn, _USERS, username)


async def list_users(conn: Connection) -> list[Account]:
    return await _list(conn, _USERS)


async def set_user_password(conn: Connection, username: str, password_hash: str) -> bool:
    return await _set(conn, _USERS, username, _USERS.hash_column, password_hash)


async def rehash_user_password(
    conn: Connection, username: str, verified_hash: str, password_hash: str
) -> bool:
    """The same password under stronger hash parameters: its tokens stay valid. Written
    only if the stored hash is still ``verified_hash`` (the one the login checked)."""
    return await _rehash(conn, _USERS, username, verified_hash, password_hash)


async def set_user_scopes(conn: Connection, username: str, scopes: Iterable[Scope]) -> bool:
    return await _set(conn, _USERS, username, "scopes", [s.value for s in scopes])


async def set_user_disabled(conn: Connection, username: str, disabled: bool) -> bool:
    return await _set(conn, _USERS, username, "disabled", disabled)


async def delete_user(conn: Connection, username: str) -> bool:
    return await _delete(conn, _USERS, username)


# Clients -------------------------------------------------------------------------------------


async def add_client(
    conn: Connection,
    client_id: str,
    secret_hash: str,
    scopes: Iterable[Scope],
    *,
    turbine_id: str | None = None,
) -> bool:
    """True if created, False if the id is taken. A turbine binding needs readings:write
    and a registered turbine (the database checks both)."""
    scopes = tuple(scopes)
    if turbine_id is not None and Scope.READINGS_WRITE not in scopes:
        raise CredentialsError("--turbine binds readings:write: give the client that scope")
    status = await conn.execute(
        "INSERT INTO api_clients (client_id, secret_hash, scopes, turbine_id)"
        " VALUES ($1, $2, $3, $4) ON CONFLICT (client_id) DO NOTHING",
        check_name("client id", client_id),
        secret_hash,
        [s.value for s in scopes],
        turbine_id,
    )
    return status.endswith(" 1")


async def get_client(conn: Connection, client_id: str) -> Account | None:
    return await _get(conn, _CLIENTS, client_id)


async def list_clients(conn: Connection) -> list[Account]:
    return await _list(conn, _CLIENTS)


async def set_client_secret(conn: Connection, client_id: str, secret_hash: str) -> bool:
    return await _set(conn, _CLIENTS, client_id, _CLIENTS.hash_column, secret_hash)


async def rehash_client_secret(
    conn: Connection, client_id: str, verified_hash: str, secret_hash: str
) -> bool:
    """As ``rehash_user_password``, for a client secret."""
    return await _rehash(conn, _CLIENTS, client_id, verified_hash, secret_hash)


async def set_client_scopes(conn: Connection, client_id: str, scopes: Iterable[Scope]) -> bool:
    """The database refuses to drop readings:write from a client bound to a turbine."""
    return await _set(conn, _CLIENTS, client_id, "scopes", [s.value for s in scopes])


async def set_client_disabled(conn: Connection, client_id: str, disabled: bool) -> bool:
    return await _set(conn, _CLIENTS, client_id, "disabled", disabled)


async def delete_client(conn: Connection, client_id: str) -> bool:
    return await _delete(conn, _CLIENTS, client_id)


# Token versions ------------------------------------------------------------------------------

_SUBJECT_TABLES: Final = {"user": _USERS, "client": _CLIENTS}


def subject_of(kind: str, name: str) -> str:
    """A token's ``sub``: ``user:<name>`` or ``client:<id>``."""
    return f"{kind}:{name}"


async def live_token_version(conn: Connection, subject: str) -> int | None:
    """The token version a token of ``subject`` must carry to be accepted; None when no
    token of it may be (the account is gone or disabled, or the subject is not one)."""
    kind, _, name = subject.partition(":")
    table = _SUBJECT_TABLES.get(kind)
    if table is None or not name:
        return None
    row = await conn.fetchrow(
        f"SELECT token_version, disabled FROM {table.name} WHERE {table.key} = $1", name
    )
    if row is None or row["disabled"]:
        return None
    version: int = row["token_version"]
    return version
