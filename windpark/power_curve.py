"""Measured power curve by the IEC 61400-12-1 method of bins, against the model's curve.

Wind speeds are normalised to standard air density (v_n = v * (rho / 1.225) ** (1/3),
rho from the reading's temperature and the site altitude), grouped in 0.5 m/s bins
centred on multiples of 0.5 m/s, and each bin's mean power is compared with the
reference curve at the bin's mean normalised speed. Only readings that describe the
turbine's capability are used: state ``running`` (not curtailed, stopped or faulty)
and no doubt about its values (quality flags other than the stream notes seq_gap and
seq_reset), as OpenOA filters before binning.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from windpark.db import Connection
from windpark.turbine_model import STANDARD_AIR_DENSITY_KG_M3, TurbineModel

BIN_WIDTH_MS: Final = 0.5

# The barometric pressure and the density formula of turbine_model.air_density_kg_m3,
# in SQL so that binning happens in the database, not in Python over millions of rows.
BINS_SQL: Final = f"""
WITH normalised AS (
    SELECT power_kw,
           wind_speed_ms * power(
               (101325.0 * power(1.0 - 2.25577e-5 * $4::float8, 5.25588))
               / (287.05 * (temperature_c + 273.15)) / {STANDARD_AIR_DENSITY_KG_M3},
               1.0 / 3.0) AS wind_n
    FROM readings
    WHERE turbine_id = $1 AND ts >= $2 AND ts < $3
      -- Stream notes (seq gap 8, seq reset 32) are not doubts about the values.
      AND state = 'running' AND quality_flags & ~40 = 0
)
SELECT round(wind_n / {BIN_WIDTH_MS}) * {BIN_WIDTH_MS} AS bin_ms,
       count(*) AS n,
       avg(wind_n) AS wind_avg_ms,
       avg(power_kw) AS power_avg_kw,
       stddev_samp(power_kw) AS power_std_kw
FROM normalised
GROUP BY 1
ORDER BY 1
"""


@dataclass(frozen=True, slots=True)
class PowerCurveBin:
    bin_ms: float
    n: int
    wind_avg_ms: float
    power_avg_kw: float
    power_std_kw: float | None
    reference_power_kw: float
    performance_ratio: float | None  # measured / reference; None where the reference is 0


@dataclass(frozen=True, slots=True)
class PowerCurve:
    turbine_id: str
    model: str
    rated_power_kw: float
    readings_used: int
    bins: tuple[PowerCurveBin, ...]
    # Energy-weighted: sum(n * measured) / sum(n * reference) over bins with a reference.
    performance_ratio: float | None


def assemble(
    turbine_id: str,
    model: TurbineModel,
    rows: Sequence[tuple[float, int, float, float, float | None]],
) -> PowerCurve:
    """From (bin, n, mean wind, mean power, std power) rows to the compared curve."""
    bins = []
    measured = expected = 0.0
    for bin_ms, n, wind_avg, power_avg, power_std in rows:
        reference = model.power_kw(wind_avg)
        ratio = power_avg / reference if reference > 0 else None
        if reference > 0:
            measured += n * power_avg
            expected += n * reference
        bins.append(PowerCurveBin(bin_ms, n, wind_avg, power_avg, power_std, reference, ratio))
    return PowerCurve(
        turbine_id=turbine_id,
        model=model.name,
        rated_power_kw=model.rated_power_kw,
        readings_used=sum(b.n for b in bins),
        bins=tuple(bins),
        performance_ratio=measured / expected if expected > 0 else None,
    )


async def measure(
    conn: Connection,
    turbine_id: str,
    model: TurbineModel,
    start: datetime,
    end: datetime,
    *,
    altitude_m: float = 0.0,
) -> PowerCurve:
    rows = await conn.fetch(BINS_SQL, turbine_id, start, end, altitude_m)
    return assemble(
        turbine_id,
        model,
        [
            (r["bin_ms"], r["n"], r["wind_avg_ms"], r["power_avg_kw"], r["power_std_kw"])
            for r in rows
        ],
    )
