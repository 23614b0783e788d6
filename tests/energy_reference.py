"""Measured energy computed directly from raw rows, for tests to compare the system with.

Independent of ``readings.held_s`` and of every rollup: the readings' instants and
powers, and each turbine's ``max_hold_s``, are all it reads. The rule (docs/analytics.md):
a reading holds its power until its turbine's next reading, for at most ``max_hold_s``;
the newest holds nothing; a hold counts whole in the bucket of the reading that starts it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import asyncpg

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass
class Measured:
    energy_kwh: float = 0.0
    covered_s: float = 0.0
    n: int = 0


def holds_s(instants: Sequence[datetime], max_hold_s: float) -> list[float]:
    """Each instant's hold, for one turbine's instants in order."""
    out = []
    for here, following in zip(instants, [*instants[1:], None], strict=True):
        gap_s = 0.0 if following is None else (following - here).total_seconds()
        out.append(min(gap_s, max_hold_s))
    return out


def fixed_buckets(width: timedelta) -> Callable[[datetime], datetime]:
    """Epoch-aligned buckets, as ``time_bucket`` makes them."""
    return lambda t: _EPOCH + ((t - _EPOCH) // width) * width


async def measured(
    conn: asyncpg.Connection | asyncpg.pool.PoolConnectionProxy,
    turbine_ids: Sequence[str],
    bucket_of: Callable[[datetime], datetime],
) -> dict[tuple[str, datetime], Measured]:
    """(turbine, bucket start) -> energy, covered time and count, from every stored reading
    of the turbines."""
    out: dict[tuple[str, datetime], Measured] = defaultdict(Measured)
    for turbine_id in turbine_ids:
        max_hold_s = await conn.fetchval(
            "SELECT max_hold_s FROM turbines WHERE turbine_id = $1", turbine_id
        )
        rows = await conn.fetch(
            "SELECT ts, power_kw FROM readings WHERE turbine_id = $1 ORDER BY ts", turbine_id
        )
        for row, hold_s in zip(rows, holds_s([r["ts"] for r in rows], max_hold_s), strict=True):
            m = out[(turbine_id, bucket_of(row["ts"]))]
            m.energy_kwh += row["power_kw"] * hold_s / 3600.0
            m.covered_s += hold_s
            m.n += 1
    return dict(out)


def park(per_turbine: dict[tuple[str, datetime], Measured]) -> dict[datetime, Measured]:
    """The same, summed over the turbines per bucket."""
    out: dict[datetime, Measured] = defaultdict(Measured)
    for (_, bucket), m in per_turbine.items():
        p = out[bucket]
        p.energy_kwh += m.energy_kwh
        p.covered_s += m.covered_s
        p.n += m.n
    return dict(out)
