"""The turbine registry (table ``turbines``): who may send readings, and of which model."""

from __future__ import annotations

from dataclasses import dataclass

from windpark.db import Connection
from windpark.rollups import DEFAULT_MAX_HOLD_S
from windpark.turbine_model import TurbineModel, load_model


@dataclass(frozen=True, slots=True)
class RegisteredTurbine:
    turbine_id: str
    name: str
    model: TurbineModel


def park_turbine_ids(count: int, prefix: str = "WTG") -> list[str]:
    """A park's identities: WTG01, WTG02, ... (the width grows past 99)."""
    width = max(2, len(str(count)))
    return [f"{prefix}{i:0{width}d}" for i in range(1, count + 1)]


async def add_turbine(
    conn: Connection,
    turbine_id: str,
    *,
    model: str,
    name: str | None = None,
    max_hold_s: float | None = None,
) -> bool:
    """Register a turbine; returns False when it was already registered (left as it is).

    ``max_hold_s``: the longest time one of its readings may stand for in the energy
    (windpark.rollups); at least its reading interval, or energy and coverage come out
    short. Default ``DEFAULT_MAX_HOLD_S`` (3 s: three 1 s intervals)."""
    turbine_model = load_model(model)
    status = await conn.execute(
        """
        INSERT INTO turbines (turbine_id, name, model, rated_power_kw, max_hold_s)
        VALUES ($1, $2, $3, $4, $5)
        ON CONFLICT (turbine_id) DO NOTHING
        """,
        turbine_id,
        name or turbine_id,
        turbine_model.name,
        turbine_model.rated_power_kw,
        DEFAULT_MAX_HOLD_S if max_hold_s is None else max_hold_s,
    )
    return bool(status.endswith(" 1"))


async def set_max_hold(conn: Connection, turbine_id: str, max_hold_s: float) -> bool:
    """Change a registered turbine's ``max_hold_s``; False when it is not registered.

    It applies to the holds set from now on (readings written later and their
    neighbours); the holds already stored keep the cap they were set with."""
    status = await conn.execute(
        "UPDATE turbines SET max_hold_s = $2 WHERE turbine_id = $1", turbine_id, max_hold_s
    )
    return bool(status.endswith(" 1"))


async def load_registry(conn: Connection) -> dict[str, RegisteredTurbine]:
    rows = await conn.fetch("SELECT turbine_id, name, model FROM turbines ORDER BY turbine_id")
    return {
        row["turbine_id"]: RegisteredTurbine(
            row["turbine_id"], row["name"], load_model(row["model"])
        )
        for row in rows
    }
