"""``windpark setup``: the database, its roles, the schema, the registry, and on the broker
the vhost, the topology and the identities (service users and one user per turbine).

Idempotent: every step checks before it creates, so a second run changes nothing
and takes a second or two. The machine-level part (installing TimescaleDB,
starting PostgreSQL and windpark's RabbitMQ node) is ``scripts/setup-machine.sh``,
which runs as root.
"""

from __future__ import annotations

import asyncio
import logging

import asyncpg
from pydantic import Field, SecretStr

from windpark import broker_admin, migrate, registry
from windpark.credentials_setup import ensure_local_api_credentials
from windpark.settings import (
    AdminBrokerSettings,
    ApiAuthSettings,
    DatabaseSettings,
    WindparkSettings,
)
from windpark.turbine_model import DEFAULT_MODEL

log = logging.getLogger("windpark.setup")


class SetupSettings(WindparkSettings):
    db: DatabaseSettings = DatabaseSettings()
    # Setup administers the broker: the management API and the topology, as windpark-admin.
    broker: AdminBrokerSettings = AdminBrokerSettings()
    # A superuser connection, used only here: creating roles, databases and the extension.
    admin_dsn: str = "postgresql://postgres@127.0.0.1:5432/postgres"
    park_size: int = Field(default=10, ge=0)
    turbine_model: str = DEFAULT_MODEL
    # The generators' reading interval (WINDPARK_INTERVAL_S, as services/generator reads
    # it): the park's turbines are registered with three of them as their max hold.
    interval_s: float = Field(default=1.0, gt=0, le=3600)
    # Local and test only: the API's JWT key file and `admin` user (credentials_setup.py).
    api: ApiAuthSettings = ApiAuthSettings()
    # psql users' read-only role (docs/analytics.md); no password: local trust only.
    analyst_password: SecretStr = SecretStr("")


def _quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _quote_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


async def ensure_database(settings: SetupSettings) -> None:
    db = settings.db
    admin = await asyncpg.connect(settings.admin_dsn)
    try:
        role_exists = await admin.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", db.user)
        password = db.password.get_secret_value()
        password_clause = f" PASSWORD {_quote_literal(password)}" if password else ""
        if not role_exists:
            log.info("creating role %s", db.user)
            await admin.execute(f"CREATE ROLE {_quote_ident(db.user)} LOGIN{password_clause}")
        elif password:
            await admin.execute(f"ALTER ROLE {_quote_ident(db.user)}{password_clause}")
        db_exists = await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", db.name)
        if not db_exists:
            log.info("creating database %s", db.name)
            await admin.execute(
                f"CREATE DATABASE {_quote_ident(db.name)} OWNER {_quote_ident(db.user)}"
            )
    finally:
        await admin.close()
    # The extension needs a superuser; create it in the new database with the admin role.
    admin_db = await asyncpg.connect(settings.admin_dsn, database=db.name)
    try:
        await admin_db.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
    finally:
        await admin_db.close()


async def drop_database(settings: SetupSettings) -> None:
    """For tests: remove the database entirely (never used by `make run`)."""
    admin = await asyncpg.connect(settings.admin_dsn)
    try:
        await admin.execute(
            f"DROP DATABASE IF EXISTS {_quote_ident(settings.db.name)} WITH (FORCE)"
        )
    finally:
        await admin.close()


# A reading holds for up to this many reading intervals: one missed reading is bridged,
# a longer gap is not.
PARK_HOLD_INTERVALS = 3


async def register_park(settings: SetupSettings) -> int:
    """Register the park's turbines (those already registered are left as they are)."""
    conn = await asyncpg.connect(settings.db.dsn())
    try:
        added = 0
        for turbine_id in registry.park_turbine_ids(settings.park_size):
            added += await registry.add_turbine(
                conn,
                turbine_id,
                model=settings.turbine_model,
                max_hold_s=PARK_HOLD_INTERVALS * settings.interval_s,
            )
        return added
    finally:
        await conn.close()


ANALYST_ROLE = "windpark_analyst"


async def ensure_analyst_role(settings: SetupSettings) -> None:
    """The read-only role for psql users; migration 0003 grants it the history views."""
    admin = await asyncpg.connect(settings.admin_dsn)
    try:
        password = settings.analyst_password.get_secret_value()
        clause = f" PASSWORD {_quote_literal(password)}" if password else ""
        if not await admin.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", ANALYST_ROLE):
            await admin.execute(f"CREATE ROLE {ANALYST_ROLE} LOGIN{clause}")
        elif password:
            await admin.execute(f"ALTER ROLE {ANALYST_ROLE}{clause}")
        # Read-only even for tables someone creates by hand later.
        await admin.execute(f"ALTER ROLE {ANALYST_ROLE} SET default_transaction_read_only = on")
    finally:
        await admin.close()


async def setup(settings: SetupSettings) -> None:
    await ensure_analyst_role(settings)
    await ensure_database(settings)
    # alembic is synchronous (psycopg); keep it off the event loop.
    await asyncio.to_thread(migrate.upgrade, settings.db)
    added = await register_park(settings)
    if added:
        log.info("registered %d turbines", added)
    await ensure_local_api_credentials(settings.db, settings.api, settings.environment)
    await broker_admin.provision_broker(
        settings.broker, registry.park_turbine_ids(settings.park_size)
    )
    log.info(
        "setup complete: database %s, broker vhost %s on %s",
        settings.db.name,
        settings.broker.vhost,
        settings.broker.host,
    )
