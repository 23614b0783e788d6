"""The park simulator: physics for every turbine at each instant, then fault injection."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

import numpy as np
import numpy.typing as npt

from windpark.contract import Reading, encode
from windpark.simulation.controller import (
    LONG_AGO_MS,
    first_order_lag,
    ramp_fraction,
    setpoint_limit,
    storm_hysteresis,
)
from windpark.simulation.faults import (
    DEFAULT_STUCK_READINGS,
    DRAWS_PER_READING,
    FaultInjector,
    FaultMix,
)
from windpark.simulation.messages import Emission
from windpark.simulation.outages import OutageSchedule
from windpark.simulation.randomness import F64, I64, bounded_normal, uniform
from windpark.simulation.site import Site
from windpark.simulation.temperature import AmbientTemperature
from windpark.simulation.turbine import (
    CURTAILED,
    FAULT,
    FEATHERED_PITCH_DEG,
    IDLE,
    IDLE_PITCH_DEG,
    MAINTENANCE,
    MIN_RPM_FRACTION,
    NACELLE_BASE_RISE_C,
    NACELLE_LOAD_RISE_C,
    NACELLE_TIME_CONSTANT_S,
    PITCH_NOISE_DEG,
    POWER_NOISE_FRACTION,
    RPM_NOISE,
    RUNNING,
    SETPOINT_MARGIN_FRACTION,
    STATES,
    STORM,
    STORM_DERATE_MS,
    TEMPERATURE_NOISE_C,
    SimTurbine,
    TurbineTable,
)
from windpark.simulation.wind import WindField

EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MS: Final = timedelta(milliseconds=1)
# Every reading carries six decimals: enough that a channel's honest noise never
# repeats a value exactly (which a validator would take for a stuck sensor).
DECIMALS: Final = 6
# The controller ramps its power limit over at least this long, and over at least
# RAMP_READINGS readings, so that no honest reading jumps by a large part of rated power.
RAMP_DOWN_S: Final = 20.0
RAMP_UP_S: Final = 60.0
RAMP_READINGS: Final = 20
# Where in the park a turbine stands shifts its view of the weather by up to:
DIRECTION_PLACEMENT_DEG: Final = 5.0
TEMPERATURE_PLACEMENT_C: Final = 0.3


def to_ms(ts: datetime) -> int:
    if ts.tzinfo is None or ts.utcoffset() is None:
        raise ValueError("the simulator needs aware datetimes (UTC)")
    return (ts - EPOCH) // _MS


def from_ms(ms: int) -> datetime:
    return EPOCH + timedelta(milliseconds=ms)


@dataclass(frozen=True, slots=True)
class ReadingBlock:
    """Clean readings of N turbines at T instants, as arrays of shape (T, N).

    ``state`` holds indexes into ``windpark.simulation.turbine.STATES``; ``setpoint_kw``
    is NaN where the reading has no set-point.
    """

    turbine_ids: tuple[str, ...]
    ts_ms: I64
    seq: I64
    state: npt.NDArray[np.int8]
    power_kw: F64
    wind_speed_ms: F64
    temperature_c: F64
    rotor_rpm: F64
    pitch_deg: F64
    nacelle_temperature_c: F64
    wind_direction_deg: F64
    setpoint_kw: F64

    def __len__(self) -> int:
        return int(self.seq.size)

    def readings(self) -> list[Reading]:
        """The block as ``Reading`` objects, time first, then turbine order."""
        states = [STATES[code] for code in self.state.ravel().tolist()]
        columns = zip(
            self.seq.ravel().tolist(),
            states,
            self.power_kw.ravel().tolist(),
            self.wind_speed_ms.ravel().tolist(),
            self.temperature_c.ravel().tolist(),
            self.rotor_rpm.ravel().tolist(),
            self.pitch_deg.ravel().tolist(),
            self.nacelle_temperature_c.ravel().tolist(),
            self.wind_direction_deg.ravel().tolist(),
            self.setpoint_kw.ravel().tolist(),
            strict=True,
        )
        n = len(self.turbine_ids)
        times = [from_ms(ms) for ms in self.ts_ms.tolist()]
        readings = []
        for index, (seq, state, power, wind, temp, rpm, pitch, nacelle, direction, sp) in enumerate(
            columns
        ):
            readings.append(
                Reading(
                    turbine_id=self.turbine_ids[index % n],
                    ts=times[index // n],
                    seq=seq,
                    power_kw=power,
                    wind_speed_ms=wind,
                    temperature_c=temp,
                    state=state,
                    rotor_rpm=rpm,
                    pitch_deg=pitch,
                    nacelle_temperature_c=nacelle,
                    wind_direction_deg=direction,
                    setpoint_kw=None if math.isnan(sp) else sp,
                )
            )
        return readings


class ParkSimulator:
    """Simulates a park's turbines and the faults in what they send.

    The weather is a function of (seed, time), each turbine's randomness a function of
    (seed, turbine_id, time): simulating one turbine per process or all in one gives the
    same messages. Only the controller (storm hysteresis, ramps, thermal lag), the seq
    counters and the fault injector carry state from one call to the next.
    """

    def __init__(
        self,
        turbines: Sequence[SimTurbine],
        site: Site | None = None,
        *,
        seed: int = 0,
        error_rate: float = 0.0,
        fault_mix: FaultMix | None = None,
        interval_s: float = 1.0,
        seq_start: int | Mapping[str, int] = 0,
        stuck_readings: int = DEFAULT_STUCK_READINGS,
    ) -> None:
        if not 0.0 <= error_rate <= 1.0:
            raise ValueError("error_rate must be within 0..1")
        if not interval_s >= 0.001:
            raise ValueError("interval_s must be at least 1 ms")
        if stuck_readings < 2:
            raise ValueError("stuck_readings must be at least 2 (the third repeat is flagged)")
        mix = fault_mix if fault_mix is not None else FaultMix.default()
        if error_rate > 0 and not any(mix.weights):
            raise ValueError("error_rate > 0 needs a fault mix with a non-zero weight")
        self.site = site if site is not None else Site()
        self.seed = seed
        self.error_rate = error_rate
        self.fault_mix = mix
        self.interval_s = interval_s
        self._table = TurbineTable(turbines, seed)
        self._wind = WindField(self.site, seed)
        self._temperature = AmbientTemperature(self.site, seed)
        interval_ms = interval_s * 1000.0
        self._ramp_down_ms = max(RAMP_DOWN_S * 1000.0, RAMP_READINGS * interval_ms)
        self._ramp_up_ms = max(RAMP_UP_S * 1000.0, RAMP_READINGS * interval_ms)
        self._outages = OutageSchedule(
            self._table, ramp_down_ms=int(self._ramp_down_ms), ramp_up_ms=int(self._ramp_up_ms)
        )
        n = len(self._table)
        ids = self._table.ids
        starts = [seq_start.get(t, 0) if isinstance(seq_start, Mapping) else seq_start for t in ids]
        if min(starts) < 0:
            raise ValueError("seq_start must not be negative")
        self._next_seq = np.array(starts, dtype=np.int64)
        self._storm = np.zeros(n, dtype=np.bool_)
        self._released_ms = np.full(n, LONG_AGO_MS, dtype=np.int64)
        self._nacelle_c = np.full(n, np.nan)
        self._last_ms: int | None = None
        self._setpoint_from_kw = self._table.curtailment_kw.copy()
        self._setpoint_to_kw = self._table.curtailment_kw.copy()
        self._setpoint_changed_ms = np.full(n, LONG_AGO_MS, dtype=np.int64)
        self._injectors = (
            [
                FaultInjector(
                    t.turbine_id,
                    t.model,
                    error_rate=error_rate,
                    mix=mix,
                    stuck_readings=stuck_readings,
                    altitude_m=self.site.altitude_m,
                )
                for t in self._table.turbines
            ]
            if error_rate > 0
            else None
        )

    @property
    def turbine_ids(self) -> tuple[str, ...]:
        return self._table.ids

    @property
    def turbines(self) -> tuple[SimTurbine, ...]:
        return self._table.turbines

    def step(self, ts: datetime) -> list[Emission]:
        """The messages of every turbine for the reading at ``ts``, in publishing order."""
        readings = self.step_readings(ts)
        if self._injectors is None:
            return [Emission(r.turbine_id, r.turbine_id, r.seq, encode(r)) for r in readings]
        counters = to_ms(ts) * DRAWS_PER_READING + np.arange(DRAWS_PER_READING, dtype=np.int64)
        draws = uniform(self._table.injection_keys[:, None], counters[None, :]).tolist()
        emissions: list[Emission] = []
        for injector, reading, row in zip(self._injectors, readings, draws, strict=True):
            emissions.extend(injector.process(reading, row))
        return emissions

    def next_seqs(self) -> dict[str, int]:
        """The seq each turbine's next reading will carry (a generator's durable state)."""
        return dict(zip(self._table.ids, self._next_seq.tolist(), strict=True))

    def flush(self) -> list[Emission]:
        """Messages still held back (an out-of-order fault) when the run stops."""
        if self._injectors is None:
            return []
        return [e for injector in self._injectors for e in injector.flush()]

    def step_readings(self, ts: datetime) -> list[Reading]:
        """Clean readings of every turbine at ``ts`` (no faults); advances the simulation."""
        return self._simulate(np.array([to_ms(ts)], dtype=np.int64)).readings()

    def simulate_block(
        self, start: datetime, steps: int, interval_s: float | None = None
    ) -> ReadingBlock:
        """Clean readings at ``steps`` instants from ``start``, ``interval_s`` apart.

        The fast path for backfills: numbers only, no ``Reading`` objects, no faults.
        """
        if steps < 1:
            raise ValueError("steps must be at least 1")
        interval_ms = round((self.interval_s if interval_s is None else interval_s) * 1000.0)
        if interval_ms < 1:
            raise ValueError("interval_s must be at least 1 ms")
        t_ms = to_ms(start) + np.arange(steps, dtype=np.int64) * interval_ms
        return self._simulate(t_ms)

    def set_curtailment(self, turbine_id: str, setpoint_kw: float | None, at: datetime) -> None:
        """Change a turbine's standing set-point from ``at`` on (ramped, like a controller).

        None lifts the curtailment.
        """
        column = self._table.ids.index(turbine_id)
        if setpoint_kw is not None and not setpoint_kw >= 0:
            raise ValueError("setpoint_kw must not be negative")
        at_ms = to_ms(at)
        current = self._user_limit(np.array([at_ms], dtype=np.int64))[0, column]
        self._setpoint_from_kw[column] = current
        cap = self._table.cap_kw[column]
        self._setpoint_to_kw[column] = cap if setpoint_kw is None else min(setpoint_kw, cap)
        self._setpoint_changed_ms[column] = at_ms

    def _user_limit(self, t_ms: I64) -> F64:
        return setpoint_limit(
            t_ms,
            from_kw=self._setpoint_from_kw,
            to_kw=self._setpoint_to_kw,
            changed_ms=self._setpoint_changed_ms,
            ramp_down_ms=self._ramp_down_ms,
            ramp_up_ms=self._ramp_up_ms,
        )

    def _simulate(self, t_ms: I64) -> ReadingBlock:
        if self._last_ms is not None and int(t_ms[0]) <= self._last_ms:
            raise ValueError(
                f"time must move forward: {from_ms(int(t_ms[0])).isoformat()} is not after "
                f"{from_ms(self._last_ms).isoformat()}"
            )
        table = self._table
        counters = t_ms[:, None]
        ambient = self._temperature.celsius(t_ms)
        wind = self._wind.at_turbines(
            self._wind.park(t_ms),
            t_ms,
            gust_keys=table.gust_keys,
            noise_keys=table.anemometer_keys,
            vane_keys=table.vane_keys,
            speed_factor=1.0 + self.site.turbine_wind_spread * table.speed_placement,
            direction_offset_deg=DIRECTION_PLACEMENT_DEG * table.direction_placement,
        )
        speed = wind.speed_ms
        temperature = (
            ambient[:, None]
            + TEMPERATURE_PLACEMENT_C * table.temperature_placement[None, :]
            + TEMPERATURE_NOISE_C * bounded_normal(table.thermometer_keys[None, :], counters)
        )
        cap = table.cap_kw
        curve = table.curve_kw(speed, self._temperature.curve_wind_factor(ambient))
        noisy = curve * (
            1.0 + POWER_NOISE_FRACTION * bounded_normal(table.power_keys[None, :], counters)
        )
        # Reflected, not clipped, at the cap: a clipped value would repeat exactly.
        available = np.where(noisy > cap, 2.0 * cap - noisy, noisy)

        limit, state = self._control(t_ms, speed)
        curtailed = state == CURTAILED
        hover = limit * (
            1.0 - SETPOINT_MARGIN_FRACTION * uniform(table.setpoint_keys[None, :], counters)
        )
        power = np.where(curtailed, np.minimum(available, hover), _ZERO)
        power = np.where(state == RUNNING, available, power)
        rpm, pitch = self._rotor(t_ms, speed, state, power, available)
        nacelle = self._nacelle(t_ms, ambient, power)

        rows = len(t_ms)
        seq = self._next_seq[None, :] + np.arange(rows, dtype=np.int64)[:, None]
        self._next_seq = self._next_seq + rows
        self._last_ms = int(t_ms[-1])
        return ReadingBlock(
            turbine_ids=table.ids,
            ts_ms=t_ms,
            seq=seq,
            state=state,
            power_kw=_rounded(power),
            wind_speed_ms=_rounded(speed),
            temperature_c=_rounded(temperature),
            rotor_rpm=_rounded(rpm),
            pitch_deg=_rounded(pitch),
            nacelle_temperature_c=_rounded(nacelle),
            # Rounding may carry 359.9999997 to 360, which is 0.
            wind_direction_deg=np.mod(_rounded(wind.direction_deg), 360.0),
            setpoint_kw=_rounded(np.where(curtailed, limit, _NAN)),
        )

    def _control(self, t_ms: I64, speed: F64) -> tuple[F64, npt.NDArray[np.int8]]:
        """The controller's power limit and the turbine state, (T, N) each."""
        table = self._table
        cap = table.cap_kw
        storm, released_ms = storm_hysteresis(
            speed,
            t_ms,
            cut_out_ms=table.cut_out_ms,
            restart_ms=table.restart_ms,
            was_storm=self._storm,
            released_ms=self._released_ms,
        )
        self._storm = storm[-1].copy()
        self._released_ms = released_ms[-1].copy()
        outages = self._outages.limits(t_ms)
        restart = cap * ramp_fraction(t_ms[:, None] - released_ms, self._ramp_up_ms)
        derate = cap * np.clip((table.cut_out_ms - speed) / STORM_DERATE_MS, 0.0, 1.0)
        limit = np.minimum(
            np.minimum(outages.limit_kw, restart), np.minimum(derate, self._user_limit(t_ms))
        )
        # Later assignments win: an outage outranks the weather, maintenance a fault.
        state = np.full(speed.shape, RUNNING, dtype=np.int8)
        state[limit < cap] = CURTAILED
        state[speed < table.cut_in_ms] = IDLE
        state[storm] = STORM
        state[outages.fault] = FAULT
        state[outages.maintenance] = MAINTENANCE
        return limit, state

    def _rotor(
        self, t_ms: I64, speed: F64, state: npt.NDArray[np.int8], power: F64, available: F64
    ) -> tuple[F64, F64]:
        """Rotor speed and blade pitch."""
        table = self._table
        counters = t_ms[:, None]
        producing = (state == RUNNING) | (state == CURTAILED)
        idle = state == IDLE
        rated_rpm = table.rated_rpm
        optimal = np.clip(speed * table.rpm_per_ms, MIN_RPM_FRACTION * rated_rpm, rated_rpm)
        idling = 0.5 * MIN_RPM_FRACTION * rated_rpm * np.minimum(speed / table.cut_in_ms, 1.0)
        rpm = np.where(producing, optimal, np.where(idle, idling, _ZERO))
        rpm = np.abs(rpm + RPM_NOISE * bounded_normal(table.rpm_keys[None, :], counters))

        above_rated = 4.5 * np.sqrt(np.maximum(speed - table.rated_wind_ms, 0.0))
        # Curtailment pitches the blades out of the wind in proportion to the power shed.
        kept = np.divide(power, available, out=np.ones_like(power), where=available > 0)
        stopped = np.where(idle, IDLE_PITCH_DEG, FEATHERED_PITCH_DEG)
        pitch = np.where(producing, above_rated + 20.0 * np.clip(1.0 - kept, 0.0, 1.0), stopped)
        pitch = pitch + PITCH_NOISE_DEG * bounded_normal(table.pitch_keys[None, :], counters)
        return rpm, pitch

    def _nacelle(self, t_ms: I64, ambient: F64, power: F64) -> F64:
        """Nacelle temperature: ambient plus heat from the load, with a thermal lag."""
        table = self._table
        heat = ambient[:, None] + NACELLE_BASE_RISE_C + NACELLE_LOAD_RISE_C * power / table.rated_kw
        first_dt_s = 0.0 if self._last_ms is None else (int(t_ms[0]) - self._last_ms) / 1000.0
        dt_s = (int(t_ms[1]) - int(t_ms[0])) / 1000.0 if len(t_ms) > 1 else first_dt_s
        lagged = first_order_lag(
            heat, self._nacelle_c, first_dt_s=first_dt_s, dt_s=dt_s, tau_s=NACELLE_TIME_CONSTANT_S
        )
        self._nacelle_c = lagged[-1].copy()
        noise = bounded_normal(table.nacelle_keys[None, :], t_ms[:, None])
        result: F64 = lagged + TEMPERATURE_NOISE_C * noise
        return result


_ZERO: Final = np.float64(0.0)
_NAN: Final = np.float64(np.nan)


def _rounded(values: F64) -> F64:
    result: F64 = np.round(values, DECIMALS)
    return result
