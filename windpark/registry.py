"""The turbine registry (table ``turbines``): who may send readings, and of which model."""

from __future__ import annotations

from dataclasses import dataclass

from windpark.db import Connection
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
    conn: Connection, turbine_id: str, *, model: str, name: str | None = None
) -> bool:
    """Register a turbine; returns False when it was already registered."""
    turbine_model = load_model(model)
    status = await conn.execute(
        """
        INSERT INTO turbines (turbine_id, name, model, rated_power_kw)
        VALUES ($1, $2, $3, $4)
        ON CONFLICT (turbine_id) DO NOTHING
        """,
        turbine_id,
        name or turbine_id,
        turbine_model.name,
        turbine_model.rated_power_kw,
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
