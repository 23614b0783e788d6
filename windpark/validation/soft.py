"""Soft checks: doubts that flag a stored reading, and the per-turbine memory they need.

A flag never rejects: the reading is plausible on its own, only odd next to the power
curve or to the readings before it. The memory (``TurbineTrack``) is immutable; every
check returns a new one, and the caller keeps it only after its database commit, so a
rolled-back batch leaves no trace in it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from windpark.contract import NON_PRODUCING_STATES, Reading, TurbineState
from windpark.turbine_model import TurbineModel, air_density_kg_m3
from windpark.validation.limits import DEFAULT_LIMITS, Limits
from windpark.validation.reasons import NO_FLAGS, QualityFlag


@dataclass(frozen=True, slots=True)
class Run:
    """A value and how many consecutive readings carried exactly it."""

    value: float
    count: int = 1

    def then(self, value: float) -> Run:
        return Run(value, self.count + 1) if value == self.value else Run(value)


@dataclass(frozen=True, slots=True)
class TurbineTrack:
    """What the soft checks remember of one turbine between two readings."""

    turbine_id: str
    # Newest reading by time. A duplicate or a late reading does not move it, so that
    # the sequence and spike checks always compare with the present.
    last: Reading
    # Newest readings whose power, and whose wind speed, were not spikes: a spike is
    # measured from here, so the reading after a one-off spike is not a spike itself.
    good_power: Reading
    good_wind: Reading
    power_run: Run
    wind_run: Run
    temperature_run: Run

    @classmethod
    def start(cls, reading: Reading) -> TurbineTrack:
        return cls(
            turbine_id=reading.turbine_id,
            last=reading,
            good_power=reading,
            good_wind=reading,
            power_run=Run(reading.power_kw),
            wind_run=Run(reading.wind_speed_ms),
            temperature_run=Run(reading.temperature_c),
        )

    @property
    def last_seq(self) -> int:
        return self.last.seq

    @property
    def last_ts(self) -> datetime:
        return self.last.ts


def soft_checks(
    reading: Reading, *, model: TurbineModel | None, track: TurbineTrack | None, limits: Limits
) -> tuple[QualityFlag, TurbineTrack]:
    """The reading's quality flags and the track after it.

    Without a model (a history replayed without its turbine) the checks that need the
    power curve or the rated power are skipped.
    """
    if track is not None and reading.ts == track.last.ts:
        # A redelivery: the storage layer absorbs it by (turbine_id, ts) and counts it.
        return NO_FLAGS, track
    flags = NO_FLAGS
    if model is not None and power_wind_mismatch(reading, model, limits):
        flags |= QualityFlag.POWER_WIND_MISMATCH
    if track is None:
        return flags, TurbineTrack.start(reading)
    if reading.ts < track.last.ts:
        # Its neighbours in time are not the readings we remember: no spike or stuck
        # verdict is possible, and the track stays on the newest reading.
        return flags | QualityFlag.OUT_OF_ORDER, track

    if reading.seq > track.last.seq + 1:
        flags |= QualityFlag.SEQ_GAP
    elif reading.seq <= track.last.seq:
        flags |= QualityFlag.SEQ_RESET

    power_spike = model is not None and _power_spike(reading, track.good_power, model, limits)
    wind_spike = _wind_spike(reading, track.good_wind, limits)
    if power_spike or wind_spike:
        flags |= QualityFlag.SPIKE

    power_run = track.power_run.then(reading.power_kw)
    wind_run = track.wind_run.then(reading.wind_speed_ms)
    temperature_run = track.temperature_run.then(reading.temperature_c)
    repeats = limits.stuck_repeats
    # Calm air reads exactly zero on a cup anemometer, and a producing turbine sits on
    # its rated (or set-point) plateau: repeating values there are normal.
    if (
        (wind_run.count >= repeats and reading.wind_speed_ms > 0)
        or temperature_run.count >= repeats
        or (
            model is not None
            and power_run.count >= repeats
            and not _steady_power_is_normal(reading, model, limits)
        )
    ):
        flags |= QualityFlag.STUCK_SENSOR

    return flags, TurbineTrack(
        turbine_id=track.turbine_id,
        last=reading,
        good_power=track.good_power if power_spike else reading,
        good_wind=track.good_wind if wind_spike else reading,
        power_run=power_run,
        wind_run=wind_run,
        temperature_run=temperature_run,
    )


def track_from_history(
    rows: Sequence[Reading], *, model: TurbineModel | None = None, limits: Limits = DEFAULT_LIMITS
) -> TurbineTrack | None:
    """Rebuild a turbine's track from its last stored readings (after a restart).

    A few readings more than ``limits.stuck_repeats`` are enough. With the turbine's
    model, spikes among them are recognised again, so that a spike stored as the very
    last reading does not become the reference for the next one.
    """
    ordered = sorted(rows, key=lambda row: row.ts)
    if len({row.turbine_id for row in ordered}) > 1:
        raise ValueError("track_from_history needs the readings of one turbine")
    track: TurbineTrack | None = None
    for row in ordered:
        _, track = soft_checks(row, model=model, track=track, limits=limits)
    return track


def curve_power_kw(model: TurbineModel, wind_speed_ms: float, temperature_c: float) -> float:
    """The curve's power for a turbine that is running.

    The model answers zero at and above cut-out because the turbine stops there; a
    turbine that reports ``running`` has not stopped yet (controllers stop on averages
    and gusts, not on one sample), so it is held to the curve's last value instead.
    """
    wind = min(wind_speed_ms, math.nextafter(model.cut_out_ms, 0.0))
    return model.power_kw(wind, air_density_kg_m3(temperature_c))


def expected_power_kw(reading: Reading, model: TurbineModel) -> float:
    if reading.state in NON_PRODUCING_STATES:
        return 0.0
    curve = curve_power_kw(model, reading.wind_speed_ms, reading.temperature_c)
    if reading.state is TurbineState.CURTAILED and reading.setpoint_kw is not None:
        return min(curve, max(reading.setpoint_kw, 0.0))
    return curve


def power_wind_mismatch(reading: Reading, model: TurbineModel, limits: Limits) -> bool:
    rated = model.rated_power_kw
    if reading.state in NON_PRODUCING_STATES:
        return reading.power_kw > limits.stopped_power_fraction * rated
    expected = expected_power_kw(reading, model)
    band = limits.power_band_fraction_of_rated * rated
    band += limits.power_band_fraction_of_expected * expected
    if reading.state is TurbineState.CURTAILED:
        # Curtailment caps the power; below the cap is the controller's business.
        return reading.power_kw > expected + band
    return abs(reading.power_kw - expected) > band


def _power_spike(reading: Reading, good: Reading, model: TurbineModel, limits: Limits) -> bool:
    dt = (reading.ts - good.ts).total_seconds()
    if not 0 < dt <= limits.spike_max_dt_s:
        return False
    rated = model.rated_power_kw
    threshold = rated * max(limits.spike_power_fraction, limits.spike_power_fraction_per_s * dt)
    jump = reading.power_kw - good.power_kw
    # A jump the curve and the state explain is the turbine at work, not a sensor: a
    # gust, a trip to fault (power to zero), a new curtailment set-point, a restart.
    expected_now = expected_power_kw(reading, model)
    expected_then = expected_power_kw(good, model)
    unexplained = abs(jump - (expected_now - expected_then))
    noise = limits.spike_power_fraction_of_expected * (expected_now + expected_then)
    return abs(jump) >= threshold and unexplained >= threshold + noise


def _wind_spike(reading: Reading, good: Reading, limits: Limits) -> bool:
    dt = (reading.ts - good.ts).total_seconds()
    if not 0 < dt <= limits.spike_max_dt_s:
        return False
    threshold = max(limits.spike_wind_ms, limits.spike_wind_ms_per_s * dt)
    return abs(reading.wind_speed_ms - good.wind_speed_ms) >= threshold


def _steady_power_is_normal(reading: Reading, model: TurbineModel, limits: Limits) -> bool:
    power = reading.power_kw
    plateau = limits.stuck_power_plateau_fraction
    if power <= 0 or power >= plateau * model.rated_power_kw:
        return True
    setpoint = reading.setpoint_kw
    return (
        reading.state is TurbineState.CURTAILED
        and setpoint is not None
        and power >= plateau * setpoint
    )
