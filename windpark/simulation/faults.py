"""Fault injection: turn a turbine's clean readings into the messages a faulty one sends.

With probability ``error_rate`` per reading a fault event starts; its kind is drawn from
a ``FaultMix``. The message never says it is faulty: the injector records, for every
message a fault touches, the verdict a validator that follows the agreement must give
(``TruthRecord``), and the generator writes those records to the ground-truth log.

The agreement, as the injector reads it (``docs/simulation.md`` has the table):

- a rejected message leaves the validator's memory of the turbine untouched;
- an exact copy of a message is a duplicate and touches nothing either;
- a message older than the newest one is out of order and moves nothing;
- every other message is compared with the previous one, flagged or not.

Each fault is placed so that its verdict does not depend on anything else: a spike and
a stuck sensor start only right after a clean, accepted, in-order reading; while a stuck
sensor repeats its value or an out-of-order reading waits to be sent, only faults that
leave the validator's memory alone (hard ones, duplicates) may start. When the drawn
kind cannot apply, another applicable kind is drawn with the same weights, so the event
rate stays exactly ``error_rate``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, timedelta
from typing import Any, Final

from windpark.contract import (
    MAX_MESSAGE_BYTES,
    Reading,
    TurbineState,
    encode,
    encode_dict,
    format_ts,
)
from windpark.simulation.messages import (
    HARD_KINDS,
    Emission,
    Expected,
    FaultKind,
    TruthRecord,
)
from windpark.simulation.turbine import STORM_DERATE_MS
from windpark.turbine_model import TurbineModel, air_density_kg_m3

KINDS: Final = tuple(FaultKind)
# Uniform draws the injector needs per reading: event, kind, then the fault's details.
DRAWS_PER_READING: Final = 6
# The agreement's stuck-sensor rule: flagged from the third identical value on.
STUCK_REPEATS: Final = 3
DEFAULT_STUCK_READINGS: Final = 5
REQUIRED_FIELDS: Final = (
    "power_kw",
    "wind_speed_ms",
    "temperature_c",
    "state",
    "ts",
    "seq",
    "turbine_id",
    "v",
)
# Distance of a power/wind mismatch from the curve: past the agreement's 0.35 * rated,
# yet close enough to the honest neighbours (within 0.40 * rated plus noise) that the
# reading after it is not taken for a spike by a validator that compares with it.
MISMATCH_FRACTION: Final = 0.38
_NON_FINITE_TOKENS: Final = (b"NaN", b"Infinity", b"-Infinity")
_PLACEHOLDER: Final = "__windpark_non_finite__"
_CHANNELS: Final = ("power_kw", "wind_speed_ms", "temperature_c")


@dataclass(frozen=True, slots=True)
class FaultMix:
    """Relative weight of each fault kind, aligned with ``tuple(FaultKind)``."""

    weights: tuple[float, ...]

    def __post_init__(self) -> None:
        if len(self.weights) != len(KINDS):
            raise ValueError(f"FaultMix needs {len(KINDS)} weights, one per FaultKind")
        for kind, weight in zip(KINDS, self.weights, strict=True):
            if not (math.isfinite(weight) and weight >= 0):
                raise ValueError(f"FaultMix: the weight of {kind} must be finite and >= 0")

    @classmethod
    def of(cls, weights: Mapping[FaultKind, float] | Mapping[str, float]) -> FaultMix:
        """Weights by kind; kinds not named get 0."""
        by_kind = {FaultKind(kind): float(weight) for kind, weight in weights.items()}
        return cls(tuple(by_kind.get(kind, 0.0) for kind in KINDS))

    @classmethod
    def default(cls) -> FaultMix:
        """Every kind; soft faults and duplicates twice as often as each hard kind."""
        return cls(tuple(1.0 if kind in HARD_KINDS else 2.0 for kind in KINDS))

    @classmethod
    def only(cls, *kinds: FaultKind | str) -> FaultMix:
        return cls.of(dict.fromkeys(kinds, 1.0))

    @classmethod
    def parse(cls, text: str) -> FaultMix:
        """``"default"``, or ``"kind=weight,kind=weight"`` (e.g. from a setting)."""
        text = text.strip()
        if text in ("", "default"):
            return cls.default()
        weights: dict[FaultKind, float] = {}
        for item in text.split(","):
            name, sep, value = item.partition("=")
            try:
                weights[FaultKind(name.strip())] = float(value) if sep else 1.0
            except ValueError as exc:
                raise ValueError(f"FaultMix: cannot read {item.strip()!r}: {exc}") from None
        return cls.of(weights)

    def weight(self, kind: FaultKind) -> float:
        return self.weights[KINDS.index(kind)]

    def as_dict(self) -> dict[FaultKind, float]:
        return dict(zip(KINDS, self.weights, strict=True))


class FaultInjector:
    """Injects faults into one turbine's readings, in order, and predicts the verdicts."""

    def __init__(
        self,
        turbine_id: str,
        model: TurbineModel,
        *,
        error_rate: float,
        mix: FaultMix,
        stuck_readings: int = DEFAULT_STUCK_READINGS,
        altitude_m: float = 0.0,
    ) -> None:
        self.turbine_id = turbine_id
        self._model = model
        self._error_rate = error_rate
        self._weights = tuple((k, w) for k, w in zip(KINDS, mix.weights, strict=True) if w > 0)
        self._stuck_readings = stuck_readings
        self._altitude_m = altitude_m
        self._stuck_max_wind_ms = model.cut_out_ms - STORM_DERATE_MS - 2.0
        self._held: Emission | None = None
        self._stuck_channel = ""
        self._stuck_value = 0.0
        self._stuck_left = 0
        # What an agreeing validator remembers: the newest in-order message it judged
        # (not rejected, not a copy), whether that was a clean accepted reading, its
        # values, and for how many messages each channel has kept its value.
        self._last_seq: int | None = None
        self._last_clean = False
        self._values: dict[str, float] = {}
        self._runs: dict[str, int] = {}

    def process(self, reading: Reading, draws: Sequence[float]) -> list[Emission]:
        """The messages to publish for this reading, in order."""
        released, self._held = self._held, None
        in_window = self._stuck_left > 0
        if in_window:
            self._stuck_left -= 1
        kind = self._draw(reading, draws, in_window=in_window, releasing=released is not None)

        if kind is FaultKind.OUT_OF_ORDER:
            record = self._record(reading, kind, Expected.FLAGGED, event=True)
            self._held = self._emission(reading.turbine_id, reading.seq, encode(reading), record)
            return [] if released is None else [released]

        if kind is None and not in_window:
            out = [self._emission(reading.turbine_id, reading.seq, encode(reading))]
            self._observe(
                reading.seq,
                reading.power_kw,
                reading.wind_speed_ms,
                reading.temperature_c,
                clean=True,
            )
        else:
            out = self._faulty(reading, kind, draws, in_window=in_window)
        if released is not None:
            out.append(released)
        return out

    def flush(self) -> list[Emission]:
        """A message still held back for out-of-order delivery, when the run ends."""
        released, self._held = self._held, None
        return [] if released is None else [released]

    def _faulty(
        self, reading: Reading, kind: FaultKind | None, draws: Sequence[float], *, in_window: bool
    ) -> list[Emission]:
        data = reading.to_wire()
        records: list[TruthRecord] = []
        if in_window:
            data[self._stuck_channel] = self._stuck_value
        details = draws[2:]

        if kind in HARD_KINDS:
            assert kind is not None
            payload, body_id = _HARD_BUILDERS[kind](data, reading, self._model, details)
            record = self._record(reading, kind, Expected.REJECTED, event=True)
            return [self._emission(body_id, reading.seq, payload, record)]

        if kind is FaultKind.SPIKE:
            self._spike(data, details)
            records.append(self._record(reading, kind, Expected.FLAGGED, event=True))
        elif kind is FaultKind.POWER_WIND_MISMATCH:
            self._mismatch(data, reading)
            records.append(self._record(reading, kind, Expected.FLAGGED, event=True))
        elif kind is FaultKind.STUCK_SENSOR:
            self._stuck_channel = "wind_speed_ms" if details[0] < 0.5 else "temperature_c"
            self._stuck_value = self._values[self._stuck_channel]
            self._stuck_left = self._stuck_readings - 1
            data[self._stuck_channel] = self._stuck_value
            records.append(self._record(reading, kind, self._stuck_verdict(), event=True))
        elif in_window:
            records.append(self._record(reading, FaultKind.STUCK_SENSOR, self._stuck_verdict()))

        clean = not records
        payload = encode(reading) if clean else encode_dict(data)
        out = [self._emission(reading.turbine_id, reading.seq, payload, *records)]
        self._observe(
            reading.seq,
            float(data["power_kw"]),
            float(data["wind_speed_ms"]),
            float(data["temperature_c"]),
            clean=clean,
        )
        if kind is FaultKind.DUPLICATE:
            copy = self._record(reading, kind, Expected.DUPLICATE, event=True)
            out.append(self._emission(reading.turbine_id, reading.seq, payload, copy))
        return out

    def _draw(
        self, reading: Reading, draws: Sequence[float], *, in_window: bool, releasing: bool
    ) -> FaultKind | None:
        if not draws[0] < self._error_rate:
            return None
        candidates = [
            (k, w)
            for k, w in self._weights
            if self._applies(k, reading, in_window=in_window, releasing=releasing)
        ]
        total = sum(w for _, w in candidates)
        if total <= 0:
            return None
        target = draws[1] * total
        for kind, weight in candidates:
            target -= weight
            if target < 0:
                return kind
        return candidates[-1][0]

    def _applies(
        self, kind: FaultKind, reading: Reading, *, in_window: bool, releasing: bool
    ) -> bool:
        if releasing:
            # The reading after a held-back one must arrive in order and be judged, or
            # the held one would not be out of order: only a copy may join it.
            return kind is FaultKind.DUPLICATE
        if in_window:
            return kind in HARD_KINDS or kind is FaultKind.DUPLICATE
        if kind in (FaultKind.SPIKE, FaultKind.STUCK_SENSOR):
            # Both are defined against the previous reading's values.
            follows_clean = self._last_clean and self._last_seq == reading.seq - 1
            if kind is FaultKind.SPIKE:
                return follows_clean
            # The reading after a stuck run is compared with the last good one, a run
            # earlier: that must not look like a spike. Near the storm derate or on a
            # set-point ramp the power can move by half the rated power in that time.
            steady = reading.state is not TurbineState.CURTAILED
            calm_enough = reading.wind_speed_ms < self._stuck_max_wind_ms
            return follows_clean and steady and calm_enough
        if kind is FaultKind.POWER_WIND_MISMATCH:
            # Elsewhere the expected power depends on the validator's reading of the state.
            return reading.state in (TurbineState.RUNNING, TurbineState.IDLE)
        return True

    def _spike(self, data: dict[str, Any], details: Sequence[float]) -> None:
        rated = self._model.rated_power_kw
        power = self._values["power_kw"]
        wind = self._values["wind_speed_ms"]
        # Far past the agreement's 0.5 * rated (or 15 m/s), and far enough from the curve
        # that a validator which forgives what the curve explains still sees it.
        power_clear = power <= 0.3 * rated or power >= 0.75 * rated
        if power_clear and details[1] < 0.5:
            spiked = (
                (1.0 + 0.04 * details[2]) * rated
                if power <= 0.3 * rated
                else 0.05 * rated * details[2]
            )
            data["power_kw"] = round(spiked, 6)
        else:
            data["wind_speed_ms"] = round(wind + 30.0 if wind <= 28.0 else wind - 28.0, 6)

    def _mismatch(self, data: dict[str, Any], reading: Reading) -> None:
        model = self._model
        rated = model.rated_power_kw
        density = air_density_kg_m3(reading.temperature_c, self._altitude_m)
        curve = model.power_kw(reading.wind_speed_ms, density)
        offset = MISMATCH_FRACTION * rated
        power = curve + offset if curve + offset <= 1.04 * rated else curve - offset
        data["power_kw"] = round(power, 6)
        # An idle turbine reporting power claims to run (and the curve says zero).
        data["state"] = str(TurbineState.RUNNING)

    def _stuck_verdict(self) -> Expected:
        channel, value = self._stuck_channel, self._stuck_value
        run = self._runs.get(channel, 0) + 1 if self._values.get(channel) == value else 1
        return Expected.FLAGGED if run >= STUCK_REPEATS else Expected.ACCEPTED

    def _observe(
        self, seq: int, power: float, wind: float, temperature: float, *, clean: bool
    ) -> None:
        for channel, value in zip(_CHANNELS, (power, wind, temperature), strict=True):
            same = self._values.get(channel) == value
            self._runs[channel] = self._runs.get(channel, 0) + 1 if same else 1
            self._values[channel] = value
        self._last_seq = seq
        self._last_clean = clean

    def _record(
        self, reading: Reading, kind: FaultKind, expected: Expected, *, event: bool = False
    ) -> TruthRecord:
        return TruthRecord(self.turbine_id, reading.seq, kind, expected, event)

    def _emission(self, body_id: str, seq: int, payload: bytes, *truth: TruthRecord) -> Emission:
        return Emission(body_id, self.turbine_id, seq, payload, truth)


# Hard faults ------------------------------------------------------------------------------
# Each takes the wire dict (already carrying a stuck value, if any), the clean reading, the
# model and uniform draws, and returns (payload, the turbine id the body names).

HardBuilder = Callable[[dict[str, Any], Reading, TurbineModel, Sequence[float]], tuple[bytes, str]]


def _out_of_range(
    data: dict[str, Any], reading: Reading, model: TurbineModel, r: Sequence[float]
) -> tuple[bytes, str]:
    # Far outside the limits (power 1.10 * rated, wind 60 m/s, temperature -50..60 degC).
    choice = int(r[0] * 4)
    if choice == 0:
        data["power_kw"] = round((1.5 + 0.5 * r[1]) * model.rated_power_kw, 3)
    elif choice == 1:
        data["wind_speed_ms"] = round(75.0 + 20.0 * r[1], 3)
    elif choice == 2:
        data["temperature_c"] = round(85.0 + 10.0 * r[1], 3)
    else:
        data["temperature_c"] = round(-70.0 - 10.0 * r[1], 3)
    return encode_dict(data), reading.turbine_id


def _negative_power(
    data: dict[str, Any], reading: Reading, model: TurbineModel, r: Sequence[float]
) -> tuple[bytes, str]:
    data["power_kw"] = -round((0.2 + 0.3 * r[0]) * model.rated_power_kw, 3)
    return encode_dict(data), reading.turbine_id


def _non_finite(
    data: dict[str, Any], reading: Reading, model: TurbineModel, r: Sequence[float]
) -> tuple[bytes, str]:
    # orjson cannot write NaN or Infinity (JSON has no such tokens): put them in as bytes,
    # the way a sender using Python's json module would.
    data[_CHANNELS[int(r[0] * 3)]] = _PLACEHOLDER
    token = _NON_FINITE_TOKENS[int(r[1] * 3)]
    return encode_dict(data).replace(f'"{_PLACEHOLDER}"'.encode(), token), reading.turbine_id


def _missing_field(
    data: dict[str, Any], reading: Reading, model: TurbineModel, r: Sequence[float]
) -> tuple[bytes, str]:
    del data[REQUIRED_FIELDS[int(r[0] * len(REQUIRED_FIELDS))]]
    return encode_dict(data), reading.turbine_id


def _wrong_type(
    data: dict[str, Any], reading: Reading, model: TurbineModel, r: Sequence[float]
) -> tuple[bytes, str]:
    choice = int(r[0] * 4)
    if choice == 0:
        data["power_kw"] = str(data["power_kw"])
    elif choice == 1:
        data["seq"] = reading.seq + 0.5
    elif choice == 2:
        data["state"] = 3
    else:
        data["wind_speed_ms"] = str(data["wind_speed_ms"])
    return encode_dict(data), reading.turbine_id


def _malformed_json(
    data: dict[str, Any], reading: Reading, model: TurbineModel, r: Sequence[float]
) -> tuple[bytes, str]:
    # Any proper prefix of a JSON object is undecodable: its closing brace is missing.
    payload = encode_dict(data)
    return payload[: 1 + int(r[0] * (len(payload) - 2))], reading.turbine_id


def _future_ts(
    data: dict[str, Any], reading: Reading, model: TurbineModel, r: Sequence[float]
) -> tuple[bytes, str]:
    data["ts"] = format_ts(reading.ts + timedelta(hours=2.0 + 46.0 * r[0]))
    return encode_dict(data), reading.turbine_id


def _far_past_ts(
    data: dict[str, Any], reading: Reading, model: TurbineModel, r: Sequence[float]
) -> tuple[bytes, str]:
    data["ts"] = format_ts(reading.ts - timedelta(days=60.0 + 340.0 * r[0]))
    return encode_dict(data), reading.turbine_id


def _no_utc_offset(
    data: dict[str, Any], reading: Reading, model: TurbineModel, r: Sequence[float]
) -> tuple[bytes, str]:
    naive = reading.ts.astimezone(UTC).replace(tzinfo=None)
    data["ts"] = naive.isoformat(timespec="milliseconds")
    return encode_dict(data), reading.turbine_id


def _oversized(
    data: dict[str, Any], reading: Reading, model: TurbineModel, r: Sequence[float]
) -> tuple[bytes, str]:
    data["padding"] = "x" * (MAX_MESSAGE_BYTES + 1 + int(4096 * r[0]))
    return encode_dict(data), reading.turbine_id


def _unknown_turbine(
    data: dict[str, Any], reading: Reading, model: TurbineModel, r: Sequence[float]
) -> tuple[bytes, str]:
    body_id = f"ZZ-UNKNOWN-{int(r[0] * 10_000)}"
    data["turbine_id"] = body_id
    return encode_dict(data), body_id


_HARD_BUILDERS: Final[dict[FaultKind, HardBuilder]] = {
    FaultKind.OUT_OF_RANGE: _out_of_range,
    FaultKind.NEGATIVE_POWER: _negative_power,
    FaultKind.NON_FINITE: _non_finite,
    FaultKind.MISSING_FIELD: _missing_field,
    FaultKind.WRONG_TYPE: _wrong_type,
    FaultKind.MALFORMED_JSON: _malformed_json,
    FaultKind.FUTURE_TS: _future_ts,
    FaultKind.FAR_PAST_TS: _far_past_ts,
    FaultKind.NO_UTC_OFFSET: _no_utc_offset,
    FaultKind.OVERSIZED: _oversized,
    FaultKind.UNKNOWN_TURBINE: _unknown_turbine,
}
