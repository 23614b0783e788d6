"""Ambient temperature and air density over the park, as functions of (seed, time)."""

from __future__ import annotations

from typing import Final

import numpy as np

from windpark.simulation.randomness import F64, I64, keys_array, multiscale_noise, stable_key
from windpark.simulation.site import Site
from windpark.turbine_model import STANDARD_AIR_DENSITY_KG_M3, air_density_kg_m3

_HOUR_MS: Final = 3_600_000
_DAY_MS: Final = 24 * _HOUR_MS
_YEAR_DAYS: Final = 365.2425
# Weather anomalies: a few days (air masses) and half a day (fronts, cloud cover).
WEATHER_SCALES: Final = ((3 * _DAY_MS, 0.8), (12 * _HOUR_MS, 0.6))
_ZERO_C_IN_K: Final = 273.15


class AmbientTemperature:
    def __init__(self, site: Site, seed: int) -> None:
        self.site = site
        self._weather = keys_array([stable_key("windpark.sim", seed, "temperature")])
        # The turbine model's formula at 0 degC gives the pressure term at this altitude;
        # density then scales with 1/T (ideal gas).
        self._density_at_zero_c = air_density_kg_m3(0.0, site.altitude_m)

    def celsius(self, t_ms: I64) -> F64:
        site = self.site
        days = t_ms.astype(np.float64) / _DAY_MS
        # Days since 1970-01-01 modulo the mean year stays within a day of the calendar.
        day_of_year = np.mod(days, _YEAR_DAYS)
        hour = np.mod(days, 1.0) * 24.0
        seasonal = np.cos(2.0 * np.pi * (day_of_year - site.warmest_day_of_year) / _YEAR_DAYS)
        daily = np.cos(2.0 * np.pi * (hour - site.warmest_hour_utc) / 24.0)
        weather = multiscale_noise(self._weather, t_ms, WEATHER_SCALES, exact_gaussian=True)[:, 0]
        result: F64 = (
            site.mean_temperature_c
            + site.seasonal_temperature_amplitude_c * seasonal
            + site.daily_temperature_amplitude_c * daily
            + site.weather_temperature_std_c * weather
        )
        return result

    def density_kg_m3(self, celsius: F64) -> F64:
        result: F64 = self._density_at_zero_c * _ZERO_C_IN_K / (celsius + _ZERO_C_IN_K)
        return result

    def curve_wind_factor(self, celsius: F64) -> F64:
        """IEC 61400-12-1 density normalisation of the wind: (rho / 1.225) ** (1/3)."""
        result: F64 = np.cbrt(self.density_kg_m3(celsius) / STANDARD_AIR_DENSITY_KG_M3)
        return result
