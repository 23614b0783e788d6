"""``windpark turbines add|list``: the turbine registry from the command line."""

from __future__ import annotations

import asyncpg

from windpark import registry
from windpark.bootstrap import SetupSettings
from windpark.turbine_model import UnknownTurbineModelError


async def add(turbine_id: str, *, model: str | None, name: str | None) -> int:
    settings = SetupSettings()
    conn = await asyncpg.connect(settings.db.dsn())
    try:
        added = await registry.add_turbine(
            conn, turbine_id, model=model or settings.turbine_model, name=name
        )
    except UnknownTurbineModelError as exc:
        print(f"windpark: {exc}")
        return 2
    except asyncpg.CheckViolationError:
        print(f"windpark: invalid turbine id {turbine_id!r} (letters, digits, _ and -; 1-64)")
        return 2
    finally:
        await conn.close()
    print(f"{'registered' if added else 'already registered'}: {turbine_id}")
    return 0


async def list_turbines() -> int:
    settings = SetupSettings()
    conn = await asyncpg.connect(settings.db.dsn())
    try:
        rows = await conn.fetch(
            "SELECT turbine_id, name, model, rated_power_kw FROM turbines ORDER BY turbine_id"
        )
    finally:
        await conn.close()
    for row in rows:
        print(f"{row['turbine_id']}\t{row['name']}\t{row['model']}\t{row['rated_power_kw']:g} kW")
    return 0
