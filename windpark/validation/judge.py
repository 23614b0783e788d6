"""The one validation function: bytes in, a verdict out, no I/O and no mutation."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from windpark.contract import TURBINE_ID_RE, Reading
from windpark.turbine_model import TurbineModel
from windpark.validation.decoding import Fields, decode, parse_object, turbine_id_of
from windpark.validation.hard import check_identity, check_ranges, check_time
from windpark.validation.limits import DEFAULT_LIMITS, Limits
from windpark.validation.reasons import NO_FLAGS, Outcome, QualityFlag, Reason
from windpark.validation.soft import TurbineTrack, soft_checks


class TurbineContext(Protocol):
    """What judge needs to know of a registered turbine (``TurbineInfo`` or the registry's
    own record type both qualify)."""

    @property
    def turbine_id(self) -> str: ...

    @property
    def model(self) -> TurbineModel: ...


@dataclass(frozen=True, slots=True)
class TurbineInfo:
    turbine_id: str
    model: TurbineModel


@dataclass(frozen=True, slots=True)
class Verdict:
    outcome: Outcome
    reading: Reading | None  # None when rejected
    reasons: tuple[Reason, ...]  # empty unless rejected
    flags: QualityFlag
    # Who the message is filed under, also for rejects: the identity the transport
    # vouches for when it has the right format, else the body's turbine_id. It may name
    # a turbine that is not registered.
    turbine_id: str | None
    seq: int | None  # the body's seq when it is an integer that fits a bigint
    # The turbine's track after this reading; for a reject, the track passed in. Keep it
    # (under track.turbine_id) only once the reading is committed.
    track: TurbineTrack | None


def judge(
    raw: bytes,
    *,
    now: datetime,
    turbines: Mapping[str, TurbineContext],
    track: TurbineTrack | None,
    claimed_turbine_id: str | None = None,
    limits: Limits = DEFAULT_LIMITS,
) -> Verdict:
    """Judge one message as received.

    ``claimed_turbine_id`` is the identity the transport vouches for (routing key, MQTT
    topic, API token); pass it whenever there is one, even when it looks malformed, so
    that a body naming another turbine is rejected. ``track`` is the track of the body's
    turbine (the claimed one, where there is a claim), or None.
    """
    _require_aware(now)
    decoded = decode(raw, limits)
    return _conclude(
        decoded.reading,
        decoded.fields,
        decoded.reasons,
        body_turbine_id=decoded.body_turbine_id,
        body_seq=decoded.body_seq,
        now=now,
        turbines=turbines,
        track=track,
        claimed_turbine_id=claimed_turbine_id,
        limits=limits,
    )


def judge_reading(
    reading: Reading,
    *,
    now: datetime,
    turbines: Mapping[str, TurbineContext],
    track: TurbineTrack | None,
    claimed_turbine_id: str | None = None,
    limits: Limits = DEFAULT_LIMITS,
) -> Verdict:
    """Judge a reading that is already a ``Reading``.

    Only the checks on values, identity, time and history run: what the bytes said is
    gone (a missing ``v``, a timestamp without offset that the model converted in the
    host's local zone, a repeated key, the size). Ingest paths that have the bytes
    should call ``judge``.
    """
    _require_aware(now)
    return _conclude(
        reading,
        Fields.from_reading(reading),
        (),
        body_turbine_id=reading.turbine_id,
        body_seq=reading.seq,
        now=now,
        turbines=turbines,
        track=track,
        claimed_turbine_id=claimed_turbine_id,
        limits=limits,
    )


def peek_turbine_id(raw: bytes, *, limits: Limits = DEFAULT_LIMITS) -> str | None:
    """The body's turbine_id, for a caller without a transport identity that must find
    the turbine's track before calling ``judge``."""
    obj, _ = parse_object(raw, limits)
    return None if obj is None else turbine_id_of(obj)


def _conclude(
    reading: Reading | None,
    fields: Fields,
    format_reasons: tuple[Reason, ...],
    *,
    body_turbine_id: str | None,
    body_seq: int | None,
    now: datetime,
    turbines: Mapping[str, TurbineContext],
    track: TurbineTrack | None,
    claimed_turbine_id: str | None,
    limits: Limits,
) -> Verdict:
    turbine = turbines.get(fields.turbine_id) if fields.turbine_id is not None else None
    model = turbine.model if turbine is not None else None
    reasons = (
        *format_reasons,
        *check_identity(fields, known=turbine is not None, claimed_turbine_id=claimed_turbine_id),
        *check_time(fields, now=now, limits=limits),
        *check_ranges(fields, model=model, limits=limits),
    )
    if reasons:
        claimed_ok = claimed_turbine_id is not None and TURBINE_ID_RE.fullmatch(claimed_turbine_id)
        return Verdict(
            outcome=Outcome.REJECTED,
            reading=None,
            reasons=reasons,
            flags=NO_FLAGS,
            turbine_id=claimed_turbine_id if claimed_ok else body_turbine_id,
            seq=body_seq,
            track=track,
        )
    # No reasons means every format check passed, the turbine is registered and matches
    # the claim, so there is a reading and a model.
    assert reading is not None
    assert model is not None
    if track is not None and track.turbine_id != reading.turbine_id:
        raise ValueError(
            f"judge was given the track of {track.turbine_id!r} "
            f"for a reading of {reading.turbine_id!r}"
        )
    flags, new_track = soft_checks(reading, model=model, track=track, limits=limits)
    return Verdict(
        outcome=Outcome.FLAGGED if flags else Outcome.ACCEPTED,
        reading=reading,
        reasons=(),
        flags=flags,
        turbine_id=reading.turbine_id,
        seq=reading.seq,
        track=new_track,
    )


def _require_aware(now: datetime) -> None:
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("judge needs an aware `now` (UTC)")
