"""A simulated turbine: its model, set-up and the physics that turn wind into readings."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

import numpy as np

from windpark.contract import TURBINE_ID_RE, TurbineState
from windpark.simulation.randomness import F64, U64, IntArray, keys_array, stable_key
from windpark.turbine_model import TurbineModel

# Highest power the controller lets through, as a fraction of rated. Some library curves
# end above the nameplate (E-82/2300: 2350 kW); noise on top of that stays below this.
CAP_FRACTION: Final = 1.05
# Honest noise on the power: sigma as a fraction of the curve (bounded at 3.46 sigma).
POWER_NOISE_FRACTION: Final = 0.0125
# A limited turbine hovers just below its set-point, never on it: the exact same value
# three readings in a row would look like a stuck sensor.
SETPOINT_MARGIN_FRACTION: Final = 0.01
# Storm control: the controller derates linearly over this many m/s below cut-out, so
# that power is already near zero when the turbine stops at cut-out.
STORM_DERATE_MS: Final = 6.0
# Rotor: optimal tip-speed ratio below rated, tip speed limited above.
TIP_SPEED_RATIO: Final = 8.0
MAX_TIP_SPEED_MS: Final = 80.0
MIN_RPM_FRACTION: Final = 0.35
# Nacelle temperature: above ambient by a base plus a part proportional to load,
# reached with a first-order lag.
NACELLE_BASE_RISE_C: Final = 8.0
NACELLE_LOAD_RISE_C: Final = 25.0
NACELLE_TIME_CONSTANT_S: Final = 1800.0
FEATHERED_PITCH_DEG: Final = 88.0
IDLE_PITCH_DEG: Final = 2.0
# Noise of the optional channels (sigma): enough that no value repeats exactly.
TEMPERATURE_NOISE_C: Final = 0.02
RPM_NOISE: Final = 0.05
PITCH_NOISE_DEG: Final = 0.05

# State codes in ReadingBlock.state index this tuple.
STATES: Final = (
    TurbineState.IDLE,
    TurbineState.RUNNING,
    TurbineState.CURTAILED,
    TurbineState.STORM,
    TurbineState.FAULT,
    TurbineState.MAINTENANCE,
)
IDLE: Final = 0
RUNNING: Final = 1
CURTAILED: Final = 2
STORM: Final = 3
FAULT: Final = 4
MAINTENANCE: Final = 5


@dataclass(frozen=True, slots=True)
class Reliability:
    """How often a turbine fails and is serviced."""

    mtbf_days: float = 30.0
    mean_repair_h: float = 12.0
    max_repair_h: float = 72.0
    maintenance_interval_days: int = 182
    maintenance_duration_h: float = 8.0
    maintenance_start_hour_utc: float = 8.0

    def __post_init__(self) -> None:
        if not self.mtbf_days > 0:
            raise ValueError("Reliability.mtbf_days must be positive")
        if not 0 < self.mean_repair_h <= self.max_repair_h:
            raise ValueError("Reliability: 0 < mean_repair_h <= max_repair_h")
        if self.maintenance_interval_days < 1:
            raise ValueError("Reliability.maintenance_interval_days must be at least 1")
        if not 0 <= self.maintenance_duration_h < 24:
            raise ValueError("Reliability.maintenance_duration_h must be within 0..24")
        if not 0 <= self.maintenance_start_hour_utc < 24:
            raise ValueError("Reliability.maintenance_start_hour_utc must be within 0..24")


@dataclass(frozen=True, slots=True)
class SimTurbine:
    turbine_id: str
    model: TurbineModel
    # A standing curtailment set-point in kW (grid operator, noise limits); None: none.
    curtailment_kw: float | None = None
    reliability: Reliability = field(default_factory=Reliability)

    def __post_init__(self) -> None:
        if not TURBINE_ID_RE.fullmatch(self.turbine_id):
            raise ValueError(f"invalid turbine id {self.turbine_id!r}")
        if self.curtailment_kw is not None and not self.curtailment_kw >= 0:
            raise ValueError("SimTurbine.curtailment_kw must not be negative")


def _rotor_diameter_m(model: TurbineModel) -> float:
    if model.rotor_diameter_m:
        return model.rotor_diameter_m
    # Library entries without a diameter: multi-megawatt rotors scale roughly so.
    return float(1.7 * model.rated_power_kw**0.5)


@dataclass(frozen=True, slots=True)
class CurveGroup:
    """The turbines of one model and that model's curve."""

    columns: IntArray
    wind_ms: F64
    power_kw: F64


class TurbineTable:
    """The per-turbine constants as arrays of shape (N,), in the simulator's order."""

    def __init__(self, turbines: Sequence[SimTurbine], seed: int) -> None:
        self.turbines = tuple(turbines)
        self.ids = tuple(t.turbine_id for t in turbines)
        if not self.ids:
            raise ValueError("a park needs at least one turbine")
        if len(set(self.ids)) != len(self.ids):
            raise ValueError("turbine ids must be unique")

        def key_list(stream: str) -> list[int]:
            return [stable_key("windpark.sim", seed, t, stream) for t in self.ids]

        def keys(stream: str) -> U64:
            return keys_array(key_list(stream))

        def placement(stream: str) -> F64:
            # A fixed number in [-1, 1) per turbine: its place in the park.
            return np.array([k / 2.0**63 - 1.0 for k in key_list(stream)])

        self.gust_keys = keys("gust")
        self.anemometer_keys = keys("anemometer")
        self.vane_keys = keys("vane")
        self.thermometer_keys = keys("thermometer")
        self.power_keys = keys("power")
        self.setpoint_keys = keys("setpoint")
        self.rpm_keys = keys("rpm")
        self.pitch_keys = keys("pitch")
        self.nacelle_keys = keys("nacelle")
        self.fault_keys = keys("faults")
        self.injection_keys = keys("injection")
        self.speed_placement = placement("placement-speed")
        self.direction_placement = placement("placement-direction")
        self.temperature_placement = placement("placement-temperature")

        models = [t.model for t in turbines]
        self.rated_kw = np.array([m.rated_power_kw for m in models])
        self.cap_kw = CAP_FRACTION * self.rated_kw
        self.cut_in_ms = np.array([m.cut_in_ms for m in models])
        self.cut_out_ms = np.array([m.cut_out_ms for m in models])
        self.restart_ms = np.array([m.restart_ms for m in models])
        self.rated_wind_ms = np.array([m.rated_wind_ms() for m in models])
        diameter = np.array([_rotor_diameter_m(m) for m in models])
        self.rated_rpm = MAX_TIP_SPEED_MS * 60.0 / (np.pi * diameter)
        self.rpm_per_ms = TIP_SPEED_RATIO * 60.0 / (np.pi * diameter)
        self.curtailment_kw = np.array(
            [
                self.cap_kw[i] if t.curtailment_kw is None else t.curtailment_kw
                for i, t in enumerate(turbines)
            ]
        )

        by_model: dict[str, list[int]] = {}
        for index, model in enumerate(models):
            by_model.setdefault(model.name, []).append(index)
        self.curve_groups = tuple(
            CurveGroup(
                columns=np.array(columns, dtype=np.intp),
                wind_ms=np.array(models[columns[0]].curve_wind_ms),
                power_kw=np.array(models[columns[0]].curve_power_kw),
            )
            for columns in by_model.values()
        )

    def __len__(self) -> int:
        return len(self.ids)

    def curve_kw(self, wind_ms: F64, wind_factor: F64) -> F64:
        """``TurbineModel.power_kw`` for arrays: wind (T, N), density factor (T,)."""
        normalised = wind_ms * wind_factor[:, None]
        power = np.empty_like(wind_ms)
        for group in self.curve_groups:
            power[:, group.columns] = np.interp(
                normalised[:, group.columns], group.wind_ms, group.power_kw
            )
        outside = (wind_ms < self.cut_in_ms) | (wind_ms >= self.cut_out_ms)
        power[outside] = 0.0
        return power
