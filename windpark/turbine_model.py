"""Turbine models: manufacturer power curves and operating limits.

One model serves the simulator (power from wind), the validator (is this power
plausible for this wind?) and the power-curve analysis. The curves come from the
offline turbine library that the ``windpowerlib`` package ships
(``windpowerlib/oedb/power_curves.csv``, values in W); we read the CSV with the
standard library so that nothing here pulls pandas into a service.
"""

from __future__ import annotations

import bisect
import csv
import importlib.util
import math
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Final

DEFAULT_MODEL: Final = "E-82/2300"
STANDARD_AIR_DENSITY_KG_M3: Final = 1.225
# Some library curves stop at 20-22.5 m/s; that is where the data ends, not the cut-out.
DEFAULT_CUT_OUT_MS: Final = 25.0
# Storm hysteresis: after a storm stop the turbine restarts only below this speed.
DEFAULT_RESTART_MS: Final = 20.0


class UnknownTurbineModelError(LookupError):
    pass


@dataclass(frozen=True, slots=True)
class TurbineModel:
    name: str
    rated_power_kw: float
    cut_in_ms: float
    cut_out_ms: float
    restart_ms: float
    rotor_diameter_m: float | None
    curve_wind_ms: tuple[float, ...]
    curve_power_kw: tuple[float, ...]

    def power_kw(
        self, wind_speed_ms: float, air_density_kg_m3: float = STANDARD_AIR_DENSITY_KG_M3
    ) -> float:
        """Expected power at hub-height wind, on the curve, corrected for air density.

        The IEC 61400-12-1 correction for pitch-regulated turbines scales the wind
        speed: v_n = v * (rho / 1.225) ** (1/3). Zero outside [cut-in, cut-out).
        """
        if not math.isfinite(wind_speed_ms) or wind_speed_ms < self.cut_in_ms:
            return 0.0
        if wind_speed_ms >= self.cut_out_ms:
            return 0.0
        v = wind_speed_ms * (air_density_kg_m3 / STANDARD_AIR_DENSITY_KG_M3) ** (1.0 / 3.0)
        return self._interpolate(v)

    def _interpolate(self, v: float) -> float:
        xs, ys = self.curve_wind_ms, self.curve_power_kw
        if v <= xs[0]:
            return ys[0]
        if v >= xs[-1]:
            return ys[-1]
        i = bisect.bisect_right(xs, v)
        x0, x1, y0, y1 = xs[i - 1], xs[i], ys[i - 1], ys[i]
        return y0 + (y1 - y0) * (v - x0) / (x1 - x0)

    def rated_wind_ms(self) -> float:
        """Lowest wind speed at which the curve reaches 99 % of rated power."""
        for v, p in zip(self.curve_wind_ms, self.curve_power_kw, strict=True):
            if p >= 0.99 * self.rated_power_kw:
                return v
        return self.curve_wind_ms[-1]


def _library_dir() -> Path:
    # find_spec locates the package without importing it (its __init__ imports pandas).
    spec = importlib.util.find_spec("windpowerlib")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the windpowerlib package is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "oedb"


@cache
def _curves() -> dict[str, tuple[tuple[float, ...], tuple[float, ...]]]:
    curves: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {}
    with (_library_dir() / "power_curves.csv").open(newline="") as f:
        reader = csv.reader(f)
        speeds = [float(x) for x in next(reader)[1:]]
        for row in reader:
            points = [(s, float(p) / 1000.0) for s, p in zip(speeds, row[1:], strict=False) if p]
            if points:
                curves[row[0]] = (tuple(s for s, _ in points), tuple(p for _, p in points))
    return curves


@cache
def _nameplates() -> dict[str, tuple[float, float | None]]:
    plates: dict[str, tuple[float, float | None]] = {}
    with (_library_dir() / "turbine_data.csv").open(newline="") as f:
        for row in csv.DictReader(f):
            try:
                rated_kw = float(row["nominal_power"]) / 1000.0
            except (TypeError, ValueError):
                continue
            diameter = float(row["rotor_diameter"]) if row.get("rotor_diameter") else None
            plates[row["turbine_type"]] = (rated_kw, diameter)
    return plates


def available_models() -> list[str]:
    return sorted(_curves())


@cache
def load_model(name: str) -> TurbineModel:
    curves = _curves()
    if name not in curves:
        raise UnknownTurbineModelError(
            f"unknown turbine model {name!r}; known models include "
            f"{', '.join(available_models()[:8])}, ..."
        )
    wind, power = curves[name]
    rated_kw, diameter = _nameplates().get(name, (max(power), None))
    # Manufacturers quote the cut-in as the first tabulated speed with output.
    cut_in = next((v for v, p in zip(wind, power, strict=True) if p > 0), wind[0])
    return TurbineModel(
        name=name,
        rated_power_kw=rated_kw,
        cut_in_ms=cut_in,
        cut_out_ms=DEFAULT_CUT_OUT_MS,
        restart_ms=DEFAULT_RESTART_MS,
        rotor_diameter_m=diameter,
        curve_wind_ms=wind,
        curve_power_kw=power,
    )


def air_density_kg_m3(temperature_c: float, altitude_m: float = 0.0) -> float:
    """Air density from temperature and altitude (barometric formula, dry air)."""
    pressure_pa = 101325.0 * (1.0 - 2.25577e-5 * altitude_m) ** 5.25588
    return float(pressure_pa / (287.05 * (temperature_c + 273.15)))
