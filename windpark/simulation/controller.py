"""The turbine controller's memory: storm hysteresis, set-point ramps, thermal lag.

These are the only parts of the simulation that depend on the past rather than on the
time alone. Each is written for a block of T readings (arrays (T, N)) and gives the same
result whether a span of time is simulated in one block or one reading at a time.
"""

from __future__ import annotations

import math
from typing import Final

import numpy as np

from windpark.simulation.randomness import F64, I64, BoolArray

# "Long ago": a release or set-point change this old has finished ramping.
LONG_AGO_MS: Final = -(2**62)
# A first-order lag is computed in closed form over chunks short enough that a**-n stays
# below e**5: the rounding error of the closed form grows with it.
_LAG_CHUNK_EXPONENT: Final = 5.0


def storm_hysteresis(
    speed_ms: F64,
    t_ms: I64,
    *,
    cut_out_ms: F64,
    restart_ms: F64,
    was_storm: BoolArray,
    released_ms: I64,
) -> tuple[BoolArray, I64]:
    """Storm stop at or above cut-out, restart only below the restart speed.

    Returns the storm flag and the time of the latest release at or before each reading
    (shape (T, N)), from which the restart ramp is computed.
    """
    rows = len(t_ms)
    event = np.where(speed_ms >= cut_out_ms, 1, np.where(speed_ms < restart_ms, -1, 0))
    index = np.where(event != 0, np.arange(rows)[:, None], -1)
    index = np.maximum.accumulate(index, axis=0)
    latest = np.take_along_axis(event, np.maximum(index, 0), axis=0)
    storm: BoolArray = np.where(index >= 0, latest == 1, was_storm[None, :])
    before = np.vstack([was_storm[None, :], storm[:-1]])
    release = np.where(before & ~storm, t_ms[:, None], LONG_AGO_MS)
    release = np.maximum(release, released_ms[None, :])
    release_ms: I64 = np.maximum.accumulate(release, axis=0)
    return storm, release_ms


def ramp_fraction(elapsed_ms: I64 | F64, duration_ms: float) -> F64:
    """0 at the start of a ramp, 1 at its end and after."""
    result: F64 = np.clip(elapsed_ms / duration_ms, 0.0, 1.0)
    return result


def setpoint_limit(
    t_ms: I64,
    *,
    from_kw: F64,
    to_kw: F64,
    changed_ms: I64,
    ramp_down_ms: float,
    ramp_up_ms: float,
) -> F64:
    """A set-point moving from one value to another at the controller's ramp rate."""
    elapsed = t_ms[:, None] - changed_ms[None, :]
    duration = np.where(to_kw < from_kw, ramp_down_ms, ramp_up_ms)
    fraction = np.clip(elapsed / duration[None, :], 0.0, 1.0)
    moving = from_kw[None, :] + (to_kw - from_kw)[None, :] * fraction
    # The end of a ramp is the target exactly, not a sum that rounds near it.
    result: F64 = np.where(fraction >= 1.0, to_kw[None, :], moving)
    return result


def first_order_lag(
    target: F64, previous: F64, *, first_dt_s: float, dt_s: float, tau_s: float
) -> F64:
    """y[n] = a * y[n-1] + (1 - a) * x[n] along axis 0, with a = exp(-dt / tau).

    ``previous`` (N,) is the value before the block, NaN where there is none (the lag
    then starts on its target). The first reading of the block may be ``first_dt_s``
    after the previous one, the others are ``dt_s`` apart.
    """
    rows = target.shape[0]
    result = np.empty_like(target)
    a_first = math.exp(-first_dt_s / tau_s)
    start = np.where(np.isnan(previous), target[0], previous)
    result[0] = a_first * start + (1.0 - a_first) * target[0]
    if rows == 1:
        return result
    a = math.exp(-dt_s / tau_s)
    # -ln(a) = dt / tau: a chunk spans at most five time constants.
    chunk = int(_LAG_CHUNK_EXPONENT * tau_s / dt_s)
    if chunk < 2:
        # Readings over five time constants apart: no chunk to gain, a plain loop.
        for row in range(1, rows):
            result[row] = a * result[row - 1] + (1.0 - a) * target[row]
        return result
    row = 1
    while row < rows:
        stop = min(rows, row + chunk)
        steps = np.arange(1, stop - row + 1, dtype=np.float64)[:, None]
        grow = np.power(a, -steps)
        weighted = np.cumsum(grow * target[row:stop], axis=0)
        result[row:stop] = np.power(a, steps) * (result[row - 1][None, :] + (1.0 - a) * weighted)
        row = stop
    return result
