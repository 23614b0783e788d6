"""Hard checks on the values of a message: identity, time window, physical limits.

They run on whatever fields decoded cleanly, so a message with a broken field still
gets its other values judged and every applicable reason is listed at once.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import NamedTuple

from windpark.turbine_model import TurbineModel
from windpark.validation.decoding import Fields
from windpark.validation.limits import Limits
from windpark.validation.reasons import Reason, ReasonCode, printable


def check_identity(fields: Fields, *, known: bool, claimed_turbine_id: str | None) -> list[Reason]:
    body_id = fields.turbine_id
    if body_id is None:
        return []
    reasons = []
    if claimed_turbine_id is not None and body_id != claimed_turbine_id:
        reasons.append(
            Reason(
                ReasonCode.TURBINE_MISMATCH,
                f"turbine_id '{body_id}' differs from '{printable(claimed_turbine_id)}', "
                "the identity the transport vouches for",
                "turbine_id",
            )
        )
    if not known:
        reasons.append(
            Reason(
                ReasonCode.UNKNOWN_TURBINE,
                f"turbine '{body_id}' is not in the registry",
                "turbine_id",
            )
        )
    return reasons


def check_time(fields: Fields, *, now: datetime, limits: Limits) -> list[Reason]:
    ts = fields.ts
    if ts is None:
        return []
    if ts > now + timedelta(seconds=limits.clock_skew_s):
        ahead = (ts - now).total_seconds()
        return [
            Reason(
                ReasonCode.FUTURE_TIMESTAMP,
                f"ts {ts.isoformat()} is {ahead:.0f} s ahead of the receiver's clock "
                f"(tolerance {limits.clock_skew_s:g} s)",
                "ts",
            )
        ]
    if ts < now - timedelta(seconds=limits.max_age_s):
        age = (now - ts).total_seconds()
        return [
            Reason(
                ReasonCode.STALE_TIMESTAMP,
                f"ts {ts.isoformat()} is {age:.0f} s old, more than the {limits.max_age_s:g} s "
                "accepted by ingest",
                "ts",
            )
        ]
    return []


class _Bound(NamedTuple):
    code: ReasonCode
    field: str
    value: float | None
    low: float
    high: float
    unit: str
    note: str = ""


def check_ranges(fields: Fields, *, model: TurbineModel | None, limits: Limits) -> list[Reason]:
    bounds = [
        _Bound(
            ReasonCode.WIND_OUT_OF_RANGE,
            "wind_speed_ms",
            fields.wind_speed_ms,
            limits.wind_min_ms,
            limits.wind_max_ms,
            "m/s",
        ),
        _Bound(
            ReasonCode.TEMPERATURE_OUT_OF_RANGE,
            "temperature_c",
            fields.temperature_c,
            limits.temperature_min_c,
            limits.temperature_max_c,
            "°C",
        ),
        _Bound(
            ReasonCode.ROTOR_RPM_OUT_OF_RANGE,
            "rotor_rpm",
            fields.rotor_rpm,
            limits.rotor_rpm_min,
            limits.rotor_rpm_max,
            "rpm",
        ),
        _Bound(
            ReasonCode.PITCH_OUT_OF_RANGE,
            "pitch_deg",
            fields.pitch_deg,
            limits.pitch_min_deg,
            limits.pitch_max_deg,
            "°",
        ),
        _Bound(
            ReasonCode.NACELLE_TEMPERATURE_OUT_OF_RANGE,
            "nacelle_temperature_c",
            fields.nacelle_temperature_c,
            limits.nacelle_temperature_min_c,
            limits.nacelle_temperature_max_c,
            "°C",
        ),
        _Bound(
            ReasonCode.WIND_DIRECTION_OUT_OF_RANGE,
            "wind_direction_deg",
            fields.wind_direction_deg,
            limits.wind_direction_min_deg,
            limits.wind_direction_max_deg,
            "°",
        ),
    ]
    # Power limits are fractions of the model's rated power: without a registered
    # turbine there is nothing to compare with (the message is rejected anyway).
    if model is not None:
        rated = model.rated_power_kw
        of_rated = f" ({{:.0%}}..{{:.0%}} of the {model.name}'s rated {rated:g} kW)"
        bounds.insert(
            0,
            _Bound(
                ReasonCode.POWER_OUT_OF_RANGE,
                "power_kw",
                fields.power_kw,
                limits.power_min_fraction * rated,
                limits.power_max_fraction * rated,
                "kW",
                of_rated.format(limits.power_min_fraction, limits.power_max_fraction),
            ),
        )
        bounds.append(
            _Bound(
                ReasonCode.SETPOINT_OUT_OF_RANGE,
                "setpoint_kw",
                fields.setpoint_kw,
                limits.setpoint_min_fraction * rated,
                limits.setpoint_max_fraction * rated,
                "kW",
                of_rated.format(limits.setpoint_min_fraction, limits.setpoint_max_fraction),
            )
        )
    return [
        Reason(
            b.code,
            f"{b.field} {b.value:g} {b.unit} is outside {b.low:g}..{b.high:g} {b.unit}{b.note}",
            b.field,
        )
        for b in bounds
        if b.value is not None and not b.low <= b.value <= b.high
    ]
