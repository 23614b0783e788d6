"""Faults and scheduled maintenance: when a turbine is down, as a function of (seed, time).

Faults: time is cut into one-hour slots; in each slot a turbine fails with probability
1 h / MTBF (a Bernoulli approximation of exponential times between failures) at a
random minute, and is repaired after an exponential time, capped. Maintenance: every
``maintenance_interval_days`` at a fixed hour, on a day that depends on the turbine,
so that a park is never serviced all at once. Both are pure functions of (seed,
turbine_id, time): a turbine is down at the same moments whichever process simulates it.

The controller stops the turbine ahead of an outage and restarts it after, by ramping
its power limit (``ramp_down_ms`` before the start, ``ramp_up_ms`` after the end): a
jump from full power to zero between two readings would look like a spike.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

import numpy as np

from windpark.simulation.randomness import F64, I64, BoolArray, IntArray, uniform
from windpark.simulation.turbine import TurbineTable

SLOT_MS: Final = 3_600_000
DAY_MS: Final = 24 * SLOT_MS
# How far ahead a cached schedule reaches: one rebuild per this much simulated time.
_CACHE_AHEAD_MS: Final = 6 * SLOT_MS


@dataclass(frozen=True, slots=True)
class Outages:
    """Outages as parallel arrays (one entry per outage)."""

    columns: IntArray
    start_ms: I64
    end_ms: I64
    maintenance: BoolArray


@dataclass(frozen=True, slots=True)
class OutageLimits:
    limit_kw: F64  # (T, N)
    fault: BoolArray
    maintenance: BoolArray


class OutageSchedule:
    def __init__(self, table: TurbineTable, *, ramp_down_ms: int, ramp_up_ms: int) -> None:
        self._table = table
        self._ramp_down_ms = ramp_down_ms
        self._ramp_up_ms = ramp_up_ms
        rel = [t.reliability for t in table.turbines]
        self._fail_probability = np.array([1.0 / (r.mtbf_days * 24.0) for r in rel])
        self._mean_repair_ms = [r.mean_repair_h * SLOT_MS for r in rel]
        self._max_repair_ms = [int(r.max_repair_h * SLOT_MS) for r in rel]
        self._interval_days = np.array([r.maintenance_interval_days for r in rel], dtype=np.int64)
        self._phase_days = np.array(
            [
                int(k % r.maintenance_interval_days)
                for k, r in zip(table.fault_keys.tolist(), rel, strict=True)
            ],
            dtype=np.int64,
        )
        self._maintenance_start_ms = [int(r.maintenance_start_hour_utc * SLOT_MS) for r in rel]
        self._maintenance_ms = [int(r.maintenance_duration_h * SLOT_MS) for r in rel]
        self._longest_ms = max(*self._max_repair_ms, DAY_MS + max(self._maintenance_ms))
        self._cached: tuple[int, int, Outages] | None = None

    def outages(self, first_ms: int, last_ms: int) -> Outages:
        """Every outage whose ramps or downtime touch [first_ms, last_ms]."""
        cached = self._cached
        if cached is None or not cached[0] <= first_ms <= last_ms <= cached[1]:
            reach = max(last_ms, first_ms + _CACHE_AHEAD_MS)
            cached = (first_ms, reach, self._build(first_ms, reach))
            self._cached = cached
        return cached[2]

    def _build(self, first_ms: int, last_ms: int) -> Outages:
        earliest = first_ms - self._longest_ms - self._ramp_up_ms
        latest = last_ms + self._ramp_down_ms
        columns: list[int] = []
        starts: list[int] = []
        ends: list[int] = []
        maintenance: list[bool] = []

        keys = self._table.fault_keys[None, :]
        slots = np.arange(earliest // SLOT_MS, latest // SLOT_MS + 1, dtype=np.int64)[:, None]
        fails = uniform(keys, slots * 4) < self._fail_probability[None, :]
        minute = uniform(keys, slots * 4 + 1)
        repair = uniform(keys, slots * 4 + 2)
        for row, column in zip(*np.nonzero(fails), strict=True):
            start = int(slots[row, 0]) * SLOT_MS + int(minute[row, column] * SLOT_MS)
            duration = -self._mean_repair_ms[column] * math.log1p(-float(repair[row, column]))
            duration = min(duration, self._max_repair_ms[column])
            columns.append(int(column))
            starts.append(start)
            ends.append(start + max(int(duration), 1))
            maintenance.append(False)

        days = np.arange(earliest // DAY_MS, latest // DAY_MS + 1, dtype=np.int64)[:, None]
        due = (days + self._phase_days[None, :]) % self._interval_days[None, :] == 0
        for row, column in zip(*np.nonzero(due), strict=True):
            if self._maintenance_ms[column] == 0:
                continue
            start = int(days[row, 0]) * DAY_MS + self._maintenance_start_ms[column]
            columns.append(int(column))
            starts.append(start)
            ends.append(start + self._maintenance_ms[column])
            maintenance.append(True)

        return Outages(
            columns=np.array(columns, dtype=np.intp),
            start_ms=np.array(starts, dtype=np.int64),
            end_ms=np.array(ends, dtype=np.int64),
            maintenance=np.array(maintenance, dtype=np.bool_),
        )

    def limits(self, t_ms: I64) -> OutageLimits:
        """The power limit the outages impose, and who is down, at each time (T, N)."""
        n = len(self._table)
        cap = self._table.cap_kw
        limit = np.broadcast_to(cap, (len(t_ms), n)).copy()
        fault = np.zeros((len(t_ms), n), dtype=np.bool_)
        down_for_maintenance = np.zeros((len(t_ms), n), dtype=np.bool_)
        first, last = int(t_ms[0]), int(t_ms[-1])
        outages = self.outages(first, last)
        near = (outages.start_ms - self._ramp_down_ms <= last) & (
            outages.end_ms + self._ramp_up_ms >= first
        )
        for index in np.flatnonzero(near):
            column = int(outages.columns[index])
            start = int(outages.start_ms[index])
            end = int(outages.end_ms[index])
            before = (start - t_ms) / self._ramp_down_ms
            after = (t_ms - end) / self._ramp_up_ms
            level = np.clip(np.maximum(before, after), 0.0, 1.0) * cap[column]
            np.minimum(limit[:, column], level, out=limit[:, column])
            inside = (t_ms >= start) & (t_ms < end)
            target = down_for_maintenance if outages.maintenance[index] else fault
            target[:, column] |= inside
        return OutageLimits(limit_kw=limit, fault=fault, maintenance=down_for_maintenance)
