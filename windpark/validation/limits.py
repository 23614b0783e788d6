"""Thresholds of the hard and soft checks, in one immutable, configurable place."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from windpark.contract import MAX_MESSAGE_BYTES


@dataclass(frozen=True, slots=True)
class Limits:
    # Message and time window.
    max_bytes: int = MAX_MESSAGE_BYTES
    clock_skew_s: float = 30.0  # how far in the future a device clock may run
    max_age_s: float = 7 * 24 * 3600.0  # older readings belong to a backfill, not to ingest

    # Physical limits (hard). Power is a fraction of the model's rated power: a little
    # below zero is the turbine's own consumption, a little above rated is overshoot.
    power_min_fraction: float = -0.02
    power_max_fraction: float = 1.10
    wind_min_ms: float = 0.0
    wind_max_ms: float = 60.0
    temperature_min_c: float = -50.0
    temperature_max_c: float = 60.0
    # Optional channels: generous, they only keep impossible values out.
    rotor_rpm_min: float = 0.0
    rotor_rpm_max: float = 60.0  # multi-megawatt rotors turn below ~25 rpm
    pitch_min_deg: float = -15.0
    pitch_max_deg: float = 95.0  # feathered is about 90 degrees
    nacelle_temperature_min_c: float = -50.0
    nacelle_temperature_max_c: float = 100.0  # inside the nacelle, next to the gearbox
    wind_direction_min_deg: float = 0.0
    wind_direction_max_deg: float = 360.0
    setpoint_min_fraction: float = 0.0
    setpoint_max_fraction: float = 1.10

    # POWER_WIND_MISMATCH: allowed distance from the expected power. The simulator keeps
    # honest readings within 0.10 * rated + 0.10 * curve; this leaves a margin on top.
    power_band_fraction_of_rated: float = 0.25
    power_band_fraction_of_expected: float = 0.10
    # A stopped turbine (idle, storm, fault, maintenance) producing more than this.
    stopped_power_fraction: float = 0.02

    # SPIKE: a jump from the last good value of at least max(jump, rate * dt).
    # Readings further apart than spike_max_dt_s are not compared: anything can happen.
    spike_max_dt_s: float = 60.0
    spike_power_fraction: float = 0.40
    spike_power_fraction_per_s: float = 0.20
    # Added to the threshold for the part of a jump the curve does not explain: honest
    # noise has a part proportional to the expected power (simulator: 0.10 * curve), so
    # two honest readings can differ by up to 0.2 * rated + 0.1 * (both expected powers).
    spike_power_fraction_of_expected: float = 0.10
    spike_wind_ms: float = 10.0
    spike_wind_ms_per_s: float = 5.0

    # STUCK_SENSOR: the same value in this many consecutive readings.
    stuck_repeats: int = 3
    # Power at or above this fraction of rated (or of a curtailment set-point) is a
    # plateau where repeating values are normal.
    stuck_power_plateau_fraction: float = 0.99

    def __post_init__(self) -> None:
        # Bad limits are a configuration error: refuse them at start-up, not per message.
        for name in _POSITIVE:
            if not getattr(self, name) > 0:
                raise ValueError(f"Limits.{name} must be positive")
        for name in _NON_NEGATIVE:
            if not getattr(self, name) >= 0:
                raise ValueError(f"Limits.{name} must not be negative")
        for low, high in _RANGES:
            if not getattr(self, low) < getattr(self, high):
                raise ValueError(f"Limits.{low} must be below Limits.{high}")
        if self.stuck_repeats < 2:
            raise ValueError("Limits.stuck_repeats must be at least 2")


_POSITIVE: Final = (
    "max_bytes",
    "max_age_s",
    "power_max_fraction",
    "power_band_fraction_of_rated",
    "spike_max_dt_s",
    "spike_power_fraction",
    "spike_wind_ms",
    "stuck_power_plateau_fraction",
)
_NON_NEGATIVE: Final = (
    "clock_skew_s",
    "power_band_fraction_of_expected",
    "stopped_power_fraction",
    "spike_power_fraction_per_s",
    "spike_power_fraction_of_expected",
    "spike_wind_ms_per_s",
)
_RANGES: Final = (
    ("power_min_fraction", "power_max_fraction"),
    ("wind_min_ms", "wind_max_ms"),
    ("temperature_min_c", "temperature_max_c"),
    ("rotor_rpm_min", "rotor_rpm_max"),
    ("pitch_min_deg", "pitch_max_deg"),
    ("nacelle_temperature_min_c", "nacelle_temperature_max_c"),
    ("wind_direction_min_deg", "wind_direction_max_deg"),
    ("setpoint_min_fraction", "setpoint_max_fraction"),
)

DEFAULT_LIMITS: Final = Limits()
