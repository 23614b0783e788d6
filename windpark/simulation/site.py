"""The site: the climate every turbine of the park shares."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Site:
    # Long-run hub-height wind: Weibull with this mean and shape.
    mean_wind_ms: float = 7.5
    weibull_k: float = 2.0
    altitude_m: float = 0.0
    # Ambient temperature: a yearly and a daily cosine plus slow weather anomalies.
    mean_temperature_c: float = 12.0
    seasonal_temperature_amplitude_c: float = 8.0
    daily_temperature_amplitude_c: float = 4.0
    weather_temperature_std_c: float = 3.0
    warmest_day_of_year: float = 200.0
    warmest_hour_utc: float = 15.0
    # Standard deviation of the turbulence as a fraction of the mean wind.
    turbulence_intensity: float = 0.10
    # Correlation of two turbines' turbulence (their mean wind is the same anyway).
    turbulence_correlation: float = 0.7
    # Each turbine sees the park's mean wind times a fixed factor within +-this
    # (terrain, wakes), so that turbines are never identical.
    turbine_wind_spread: float = 0.04
    prevailing_direction_deg: float = 250.0
    direction_spread_deg: float = 40.0

    def __post_init__(self) -> None:
        checks = (
            (self.mean_wind_ms > 0, "mean_wind_ms must be positive"),
            (self.weibull_k > 0, "weibull_k must be positive"),
            (-500.0 <= self.altitude_m <= 5000.0, "altitude_m must be within -500..5000"),
            (self.seasonal_temperature_amplitude_c >= 0, "temperature amplitudes >= 0"),
            (self.daily_temperature_amplitude_c >= 0, "temperature amplitudes >= 0"),
            (self.weather_temperature_std_c >= 0, "weather_temperature_std_c >= 0"),
            (0 <= self.turbulence_intensity <= 0.5, "turbulence_intensity must be 0..0.5"),
            (0 <= self.turbulence_correlation <= 1, "turbulence_correlation must be 0..1"),
            (0 <= self.turbine_wind_spread < 0.5, "turbine_wind_spread must be 0..0.5"),
            (self.direction_spread_deg >= 0, "direction_spread_deg must not be negative"),
        )
        for ok, message in checks:
            if not ok:
                raise ValueError(f"Site: {message}")

    @property
    def weibull_scale_ms(self) -> float:
        """Weibull A such that the mean is ``mean_wind_ms``: mean = A * Gamma(1 + 1/k)."""
        return self.mean_wind_ms / math.gamma(1.0 + 1.0 / self.weibull_k)
