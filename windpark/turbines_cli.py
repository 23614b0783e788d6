"""``windpark turbines add|set|list``: the turbine registry and the turbines' broker identities."""

from __future__ import annotations

import asyncpg

from windpark import broker_admin, contract, registry
from windpark.bootstrap import SetupSettings
from windpark.broker_admin import BrokerAdmin, Credentials
from windpark.settings import BrokerSettings
from windpark.turbine_model import UnknownTurbineModelError


async def provision(
    settings: SetupSettings,
    turbine_id: str,
    *,
    model: str | None = None,
    name: str | None = None,
    rotate: bool = False,
    max_hold_s: float | None = None,
) -> tuple[bool, Credentials]:
    """Registry row and broker user with its permissions (idempotent).

    Returns (registered now, credentials); the password is new only when ``issued``.
    """
    broker_admin.check_turbine_user(turbine_id)
    conn = await asyncpg.connect(settings.db.dsn())
    try:
        added = await registry.add_turbine(
            conn,
            turbine_id,
            model=model or settings.turbine_model,
            name=name,
            max_hold_s=max_hold_s,
        )
    finally:
        await conn.close()
    async with BrokerAdmin.open(settings.broker) as admin:
        credentials = await broker_admin.provision_turbine(
            admin, settings.broker.vhost, turbine_id, settings.broker.secrets_dir, rotate=rotate
        )
    return added, credentials


def _show_credentials(broker: BrokerSettings, credentials: Credentials) -> None:
    user = credentials.user
    print(
        f"broker identity of {user} (the password is shown this once; give it to the device):\n"
        f"  user      {user}\n"
        f"  password  {credentials.password}\n"
        f"  AMQPS     {broker.host}:{broker.port} vhost {broker.vhost},"
        f" exchange {contract.EXCHANGE}, routing key {contract.routing_key(user)}\n"
        f"  MQTTS     {broker.host}:{broker.mqtt_port} username {broker.vhost}:{user},"
        f" topic {contract.mqtt_topic(user)}, QoS 1\n"
        f"  CA        {broker.ca_file}\n"
        f"local generators read it from {broker.secrets_dir / user}"
    )


async def add(
    turbine_id: str,
    *,
    model: str | None,
    name: str | None,
    rotate: bool = False,
    max_hold_s: float | None = None,
) -> int:
    settings = SetupSettings()
    try:
        added, credentials = await provision(
            settings, turbine_id, model=model, name=name, rotate=rotate, max_hold_s=max_hold_s
        )
    except (ValueError, UnknownTurbineModelError) as exc:
        print(f"windpark: {exc}")
        return 2
    except asyncpg.CheckViolationError:
        print(f"windpark: invalid turbine id {turbine_id!r} (letters, digits, _ and -; 1-64)")
        return 2
    print(f"{'registered' if added else 'already registered'}: {turbine_id}")
    if not added and max_hold_s is not None:
        print(
            f"max hold of {turbine_id} unchanged by add; change it with"
            f" `windpark turbines set {turbine_id} --max-hold-s {max_hold_s:g}`"
        )
    if credentials.issued:
        _show_credentials(settings.broker, credentials)
    else:
        print(
            f"broker identity of {turbine_id}: provisioned, password unchanged"
            " (--rotate-credentials issues a new one)"
        )
    return 0


async def set_turbine(turbine_id: str, *, max_hold_s: float) -> int:
    settings = SetupSettings()
    conn = await asyncpg.connect(settings.db.dsn())
    try:
        found = await registry.set_max_hold(conn, turbine_id, max_hold_s)
    finally:
        await conn.close()
    if not found:
        print(f"windpark: turbine {turbine_id!r} is not registered (windpark turbines add)")
        return 1
    print(
        f"{turbine_id}: max hold {max_hold_s:g} s for the readings written from now on"
        " (stored readings keep the holds they were given)"
    )
    return 0


async def list_turbines() -> int:
    settings = SetupSettings()
    conn = await asyncpg.connect(settings.db.dsn())
    try:
        rows = await conn.fetch(
            "SELECT turbine_id, name, model, rated_power_kw, max_hold_s FROM turbines"
            " ORDER BY turbine_id"
        )
    finally:
        await conn.close()
    for row in rows:
        print(
            f"{row['turbine_id']}\t{row['name']}\t{row['model']}\t{row['rated_power_kw']:g} kW"
            f"\tmax hold {row['max_hold_s']:g} s"
        )
    return 0
