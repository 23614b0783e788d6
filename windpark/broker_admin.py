"""Identities and permissions on windpark's broker, through RabbitMQ's management HTTP API.

Why the HTTP API rather than ``rabbitmqctl``: it works the same against the local node
(``scripts/broker.sh``) and against compose's broker container, whose neighbours have no
Erlang; and it authenticates as ``windpark-admin`` over TLS instead of needing the node's
Erlang cookie, i.e. root on the broker's machine.

Who may do what (docs/security.md has the table):

- ``concentrator``: consume ``concentrator.readings``; declares nothing, publishes nothing.
- ``api``: publish to ``telemetry`` with any turbine's routing key (HTTP ingest).
- one user per turbine, named as the turbine: publish to ``telemetry`` with its own routing
  key only (a topic permission), no queue of any kind, one connection at a time.

Passwords are random, generated here, and kept one file per user in the secrets folder
(``var/secrets/broker/<user>``, mode 0600), where the services read them.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import secrets
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final
from urllib.parse import quote

import aio_pika
import httpx

from windpark import contract, topology
from windpark.settings import ADMIN_USER, API_USER, CONCENTRATOR_USER, BrokerSettings

log = logging.getLogger("windpark.broker_admin")

NOTHING: Final = "^$"
RESERVED_USERS: Final = frozenset({ADMIN_USER, API_USER, CONCENTRATOR_USER, "guest"})
# A turbine's identity is its one connection: a second login with the same credentials
# is refused, which is also how scaled generators claim distinct turbines.
TURBINE_MAX_CONNECTIONS: Final = 1


@dataclass(frozen=True, slots=True)
class Grant:
    """Permissions of one user in one vhost: regular expressions on resource names."""

    configure: str
    write: str
    read: str
    # Routing keys this user may publish to the telemetry exchange; None sets no topic
    # permission (RabbitMQ then allows every key to whoever may write the exchange).
    topic_write: str | None = None


_EXCHANGE: Final = f"^{re.escape(contract.EXCHANGE)}$"
_KEY: Final = rf"^{re.escape(contract.ROUTING_PREFIX)}\."

CONCENTRATOR_GRANT: Final = Grant(
    configure=NOTHING, write=NOTHING, read=f"^{re.escape(contract.QUEUE)}$"
)
API_GRANT: Final = Grant(
    configure=NOTHING,
    write=_EXCHANGE,
    read=NOTHING,
    topic_write=_KEY + contract.TURBINE_ID_RE.pattern.removeprefix("^"),
)
# {username} is expanded by RabbitMQ to the connected user, i.e. the turbine id, which
# TURBINE_ID_RE keeps free of regular-expression metacharacters.
TURBINE_GRANT: Final = Grant(
    configure=NOTHING, write=_EXCHANGE, read=NOTHING, topic_write=_KEY + "{username}$"
)
ADMIN_GRANT: Final = Grant(configure=".*", write=".*", read=".*")


class BrokerAdminError(RuntimeError):
    """The management API refused a request."""


@dataclass(frozen=True, slots=True)
class Credentials:
    user: str
    password: str
    # True when the password was made by this call (new or rotated): the moment to show it.
    issued: bool


class BrokerAdmin:
    """A thin client of the management API, authenticated as the admin identity."""

    def __init__(self, client: httpx.AsyncClient, admin_user: str) -> None:
        self._client = client
        self.admin_user = admin_user

    @classmethod
    @contextlib.asynccontextmanager
    async def open(cls, settings: BrokerSettings) -> AsyncIterator[BrokerAdmin]:
        async with httpx.AsyncClient(
            base_url=settings.management_url(),
            auth=(settings.username(), settings.password_value()),
            verify=settings.ssl_context() or True,
            timeout=15.0,
        ) as client:
            yield cls(client, settings.username())

    async def _request(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        response = await self._client.request(method, path, json=body)
        if response.status_code >= 400:
            raise BrokerAdminError(
                f"{method} {path}: {response.status_code} {response.text.strip()[:300]}"
            )
        return response.json() if response.content else None

    async def user_exists(self, user: str) -> bool:
        response = await self._client.get(f"/users/{_q(user)}")
        if response.status_code == 404:
            return False
        if response.status_code >= 400:
            raise BrokerAdminError(f"GET /users/{user}: {response.status_code}")
        return True

    async def put_user(self, user: str, password: str, *, tags: Iterable[str] = ()) -> None:
        await self._request(
            "PUT", f"/users/{_q(user)}", {"password": password, "tags": ",".join(tags)}
        )

    async def delete_user(self, user: str) -> bool:
        """Deleting a user also closes its open connections."""
        response = await self._client.delete(f"/users/{_q(user)}")
        if response.status_code == 404:
            return False
        if response.status_code >= 400:
            raise BrokerAdminError(f"DELETE /users/{user}: {response.status_code}")
        return True

    async def ensure_vhost(self, vhost: str) -> None:
        await self._request("PUT", f"/vhosts/{_q(vhost)}", {})

    async def grant(self, vhost: str, user: str, grant: Grant) -> None:
        await self._request(
            "PUT",
            f"/permissions/{_q(vhost)}/{_q(user)}",
            {"configure": grant.configure, "write": grant.write, "read": grant.read},
        )
        if grant.topic_write is not None:
            await self._request(
                "PUT",
                f"/topic-permissions/{_q(vhost)}/{_q(user)}",
                {"exchange": contract.EXCHANGE, "write": grant.topic_write, "read": NOTHING},
            )

    async def set_max_connections(self, user: str, limit: int) -> None:
        await self._request("PUT", f"/user-limits/{_q(user)}/max-connections", {"value": limit})


def _q(name: str) -> str:
    return quote(name, safe="")


# Secrets ---------------------------------------------------------------------------------------


def new_password() -> str:
    return secrets.token_urlsafe(32)


def read_or_create_secret(secrets_dir: Path, user: str) -> tuple[str, bool]:
    """The user's password from its file; a new random one when there is none yet.

    Returns (password, created). O_EXCL makes two concurrent set-ups agree on one password.
    """
    path = secrets_dir / user
    secrets_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    password = new_password()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        existing = path.read_text(encoding="utf-8").strip()
        if existing:
            return existing, False
        write_secret(secrets_dir, user, password)
        return password, True
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(password)
    return password, True


def write_secret(secrets_dir: Path, user: str, password: str) -> None:
    secrets_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = secrets_dir / f".{user}.new"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(password)
    os.replace(tmp, secrets_dir / user)


# Provisioning ----------------------------------------------------------------------------------


def check_turbine_user(turbine_id: str) -> None:
    if not contract.TURBINE_ID_RE.fullmatch(turbine_id):
        raise ValueError(f"invalid turbine id {turbine_id!r} (letters, digits, _ and -; 1-64)")
    if turbine_id in RESERVED_USERS:
        raise ValueError(f"{turbine_id!r} is a reserved broker identity, not a turbine id")


async def provision_turbine(
    admin: BrokerAdmin, vhost: str, turbine_id: str, secrets_dir: Path, *, rotate: bool = False
) -> Credentials:
    """The turbine's broker user, permissions and connection limit (idempotent)."""
    check_turbine_user(turbine_id)
    if rotate:
        password, issued = new_password(), True
        write_secret(secrets_dir, turbine_id, password)
    else:
        password, issued = read_or_create_secret(secrets_dir, turbine_id)
    await admin.put_user(turbine_id, password)
    await admin.grant(vhost, turbine_id, TURBINE_GRANT)
    await admin.set_max_connections(turbine_id, TURBINE_MAX_CONNECTIONS)
    return Credentials(turbine_id, password, issued)


async def provision_services(admin: BrokerAdmin, vhost: str, secrets_dir: Path) -> None:
    for user, grant in ((CONCENTRATOR_USER, CONCENTRATOR_GRANT), (API_USER, API_GRANT)):
        password, _ = read_or_create_secret(secrets_dir, user)
        await admin.put_user(user, password)
        await admin.grant(vhost, user, grant)


async def declare_topology(broker: BrokerSettings) -> None:
    connection = await aio_pika.connect(broker.url(), ssl_context=broker.ssl_context())
    try:
        channel = await connection.channel()
        await topology.declare(channel)
    finally:
        await connection.close()


async def provision_broker(admin_settings: BrokerSettings, turbine_ids: Iterable[str]) -> None:
    """Everything `windpark setup` does on the broker, in the order that loses nothing:
    the topology (the concentrator's queue bound) exists before any turbine may log in."""
    vhost = admin_settings.vhost
    secrets_dir = admin_settings.secrets_dir
    async with BrokerAdmin.open(admin_settings) as admin:
        await admin.ensure_vhost(vhost)
        await admin.grant(vhost, admin.admin_user, ADMIN_GRANT)
        if await admin.delete_user("guest"):
            log.warning("deleted the broker's guest user")
        await declare_topology(admin_settings)
        await provision_services(admin, vhost, secrets_dir)
        provisioned = 0
        for turbine_id in turbine_ids:
            await provision_turbine(admin, vhost, turbine_id, secrets_dir)
            provisioned += 1
    log.info(
        "broker vhost %s: topology, service users and %d turbine users provisioned",
        vhost,
        provisioned,
    )
