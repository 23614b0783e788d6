"""The wind over the park and at each turbine, as functions of (seed, time).

The park's mean wind is the length of a horizontal wind vector whose two components
are independent Gaussian processes ``X1``, ``X2`` with unit variance: then
``E = (X1**2 + X2**2) / 2`` is exponential with mean 1 at every instant, and
``A * E**(1/k)`` is exactly Weibull(A, k) (for k = 2 it is the Rayleigh speed of the
vector itself). The processes vary on time scales from days (weather systems) down to
tens of minutes, so the long-run distribution is the site's Weibull while consecutive
readings stay close.

Each turbine adds turbulence: a common gust field shared by the park (which correlates
the turbines) and a part of its own, both smooth on scales of seconds to a minute, plus
a little anemometer noise so that a value never repeats exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np

from windpark.simulation.randomness import (
    F64,
    I64,
    U64,
    bounded_normal,
    keys_array,
    multiscale_noise,
    stable_key,
)
from windpark.simulation.site import Site

_MINUTE: Final = 60_000
_HOUR: Final = 60 * _MINUTE
_DAY: Final = 24 * _HOUR
# (knot spacing in ms, weight): weather systems, fronts, hours, tens of minutes.
MEAN_WIND_SCALES: Final = (
    (4 * _DAY, 0.8),
    (16 * _HOUR, 0.45),
    (3 * _HOUR, 0.3),
    (40 * _MINUTE, 0.2),
)
DIRECTION_SCALES: Final = ((_DAY, 0.7), (4 * _HOUR, 0.5), (30 * _MINUTE, 0.3))
# Turbulence seen by a nacelle anemometer sampled at about 1 Hz.
GUST_SCALES: Final = ((_MINUTE, 0.8), (10_000, 0.6))
# Turbulence never vanishes completely, even in a calm.
TURBULENCE_FLOOR_MS: Final = 0.1
ANEMOMETER_NOISE_MS: Final = 0.02
VANE_NOISE_DEG: Final = 2.0


@dataclass(frozen=True, slots=True)
class ParkWind:
    """Park-wide wind at T instants."""

    mean_ms: F64
    direction_deg: F64
    gust: F64  # the common part of the turbulence, unit variance


@dataclass(frozen=True, slots=True)
class TurbineWind:
    """Wind at N turbines and T instants, shape (T, N)."""

    speed_ms: F64
    direction_deg: F64


class WindField:
    def __init__(self, site: Site, seed: int) -> None:
        self.site = site
        self._x1 = keys_array([stable_key("windpark.sim", seed, "mean-wind-x1")])
        self._x2 = keys_array([stable_key("windpark.sim", seed, "mean-wind-x2")])
        self._direction = keys_array([stable_key("windpark.sim", seed, "direction")])
        self._gust = keys_array([stable_key("windpark.sim", seed, "gust")])
        self._common = site.turbulence_correlation**0.5
        self._own = (1.0 - site.turbulence_correlation) ** 0.5

    def park(self, t_ms: I64) -> ParkWind:
        x1 = multiscale_noise(self._x1, t_ms, MEAN_WIND_SCALES, exact_gaussian=True)[:, 0]
        x2 = multiscale_noise(self._x2, t_ms, MEAN_WIND_SCALES, exact_gaussian=True)[:, 0]
        exponential = (x1 * x1 + x2 * x2) / 2.0
        mean = self.site.weibull_scale_ms * np.power(exponential, 1.0 / self.site.weibull_k)
        swing = multiscale_noise(self._direction, t_ms, DIRECTION_SCALES, exact_gaussian=True)
        direction = (
            self.site.prevailing_direction_deg + self.site.direction_spread_deg * swing[:, 0]
        )
        gust = multiscale_noise(self._gust, t_ms, GUST_SCALES, exact_gaussian=True)[:, 0]
        return ParkWind(mean_ms=mean, direction_deg=direction, gust=gust)

    def at_turbines(
        self,
        park: ParkWind,
        t_ms: I64,
        *,
        gust_keys: U64,
        noise_keys: U64,
        vane_keys: U64,
        speed_factor: F64,
        direction_offset_deg: F64,
    ) -> TurbineWind:
        own = multiscale_noise(gust_keys, t_ms, GUST_SCALES, exact_gaussian=False)
        counters = t_ms[:, None]
        mean = park.mean_ms[:, None] * speed_factor[None, :]
        sigma = self.site.turbulence_intensity * mean + TURBULENCE_FLOOR_MS
        turbulence = self._common * park.gust[:, None] + self._own * own
        noise = ANEMOMETER_NOISE_MS * bounded_normal(noise_keys[None, :], counters)
        # abs() reflects the rare negative excursion in a calm instead of clipping it to
        # zero, which would repeat the exact same value reading after reading.
        speed = np.abs(mean + sigma * turbulence + noise)
        vane = VANE_NOISE_DEG * bounded_normal(vane_keys[None, :], counters)
        direction = np.mod(
            park.direction_deg[:, None] + direction_offset_deg[None, :] + vane, 360.0
        )
        return TurbineWind(speed_ms=speed, direction_deg=direction)
