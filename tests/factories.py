"""Plain factory functions for test data (``make_reading(**overrides)``)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from windpark.contract import Reading, TurbineState
from windpark.storage import AcceptedReading, Source
from windpark.turbine_model import load_model


def make_reading(**overrides: Any) -> Reading:
    model = load_model("E-82/2300")
    wind = overrides.pop("wind_speed_ms", 9.0)
    values: dict[str, Any] = {
        "turbine_id": "WTG01",
        "ts": datetime.now(UTC).replace(microsecond=0),
        "seq": 1,
        "power_kw": round(model.power_kw(wind), 3),
        "wind_speed_ms": wind,
        "temperature_c": 12.5,
        "state": TurbineState.RUNNING,
    }
    values.update(overrides)
    return Reading(**values)


def make_payload(**overrides: Any) -> bytes:
    """Wire bytes of a valid reading; ``None`` values remove the field."""
    data = make_reading().to_wire()
    for key, value in overrides.items():
        if value is None:
            data.pop(key, None)
        else:
            data[key] = value
    return orjson.dumps(data)


def make_series(
    turbine_id: str, start: datetime, count: int, *, step_s: float = 1.0, seq0: int = 0, **kw: Any
) -> list[Reading]:
    """``count`` consecutive readings of one turbine with varying wind and power."""
    model = load_model("E-82/2300")
    out = []
    for i in range(count):
        wind = 4.0 + (i * 7919 % 1000) / 100.0  # 4..14 m/s, deterministic, not monotonic
        out.append(
            make_reading(
                turbine_id=turbine_id,
                ts=start + timedelta(seconds=i * step_s),
                seq=seq0 + i,
                wind_speed_ms=wind,
                power_kw=round(model.power_kw(wind), 3),
                temperature_c=10.0 + (i % 13) * 0.37,
                **kw,
            )
        )
    return out


def accepted(
    reading: Reading, *, source: Source = "amqp", key: str | None = None
) -> AcceptedReading:
    return AcceptedReading(
        reading=reading,
        quality_flags=0,
        source=source,
        received_at=datetime.now(UTC),
        dedup_key=key or f"test:{reading.turbine_id}:{reading.seq}:{reading.ts.isoformat()}",
    )
