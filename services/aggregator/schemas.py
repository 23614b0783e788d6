"""Shapes of the API's answers. Every number carries its unit in its name; times are RFC 3339."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class _Answer(BaseModel):
    model_config = ConfigDict(frozen=True)


class Turbine(_Answer):
    turbine_id: str
    name: str
    model: str
    rated_power_kw: float
    created_at: datetime


class TurbineList(_Answer):
    turbines: list[Turbine]


class LatestReading(_Answer):
    """The newest stored reading of a registered turbine; reading fields are null until
    the turbine has sent one."""

    turbine_id: str
    name: str
    model: str
    rated_power_kw: float
    ts: datetime | None = Field(description="device time of the reading")
    age_s: float | None = Field(description="seconds between ts and as_of")
    seq: int | None
    state: str | None
    power_kw: float | None
    wind_speed_ms: float | None
    temperature_c: float | None
    rotor_rpm: float | None
    pitch_deg: float | None
    nacelle_temperature_c: float | None
    wind_direction_deg: float | None
    setpoint_kw: float | None
    quality_flags: int | None = Field(description="bits of windpark.validation QualityFlag")
    source: str | None
    received_at: datetime | None


class LatestReadings(_Answer):
    as_of: datetime = Field(description="database time at which the ages were computed")
    turbines: list[LatestReading]


class Reading(_Answer):
    ts: datetime
    seq: int
    state: str
    power_kw: float
    wind_speed_ms: float
    temperature_c: float
    rotor_rpm: float | None
    pitch_deg: float | None
    nacelle_temperature_c: float | None
    wind_direction_deg: float | None
    setpoint_kw: float | None
    quality_flags: int
    source: str
    received_at: datetime


class ReadingPage(_Answer):
    turbine_id: str
    window_start: datetime
    window_end: datetime
    readings: list[Reading]
    next_cursor: str | None = Field(
        description="pass as `cursor` for the next page; null on the last page"
    )


class _BucketTimes(_Answer):
    bucket_start: datetime = Field(description="written with the offset of the requested zone")
    bucket_end: datetime
    duration_s: float = Field(description="23 h or 25 h for local days with a DST change")
    partial: bool = Field(
        description="the bucket has not ended yet: its statistics will still change"
    )


class TurbineStats(_Answer):
    """Statistics of one turbine in one bucket (IEC 61400-25 style _Avg/_Min/_Max/_Std)."""

    n: int = Field(description="readings in the bucket")
    n_available: int = Field(description="readings not in fault or maintenance")
    availability: float = Field(description="n_available / n")
    power_avg_kw: float
    power_min_kw: float
    power_max_kw: float
    power_std_kw: float | None = Field(description="sample standard deviation; null when n = 1")
    wind_speed_avg_ms: float
    wind_speed_min_ms: float
    wind_speed_max_ms: float
    wind_speed_std_ms: float | None
    temperature_avg_c: float
    temperature_min_c: float
    temperature_max_c: float
    temperature_std_c: float | None
    energy_kwh: float = Field(
        description="measured: the sum over the bucket's readings of power x the time it "
        "held (until the turbine's next reading, at most its max_hold_s; the newest holds "
        "0 until its successor arrives). A gap adds nothing: it is never filled"
    )
    covered_s: float = Field(
        description="seconds the readings cover: the sum of their holds (a hold counts "
        "whole in the bucket of the reading that starts it)"
    )
    coverage: float | None = Field(
        description="covered_s / the bucket's elapsed duration, at most 1; null while "
        "no time of the bucket has passed"
    )


class _TurbineIdentity(_Answer):
    turbine_id: str


# Base order decides field order (the later base's fields come first): id, then statistics.
class TurbineBucketStats(TurbineStats, _TurbineIdentity):
    pass


class ParkBucket(_BucketTimes):
    turbines_reporting: int
    n: int = Field(description="readings of all turbines in the bucket")
    park_mean_power_kw: float = Field(
        description="mean of every reading in the bucket: sum(power) / n over all turbines"
    )
    park_total_power_kw: float = Field(description="sum of the turbines' mean powers")
    wind_speed_avg_ms: float = Field(description="mean of every reading in the bucket")
    temperature_avg_c: float
    availability: float
    energy_kwh: float = Field(description="sum of the turbines' energy_kwh (measured)")
    covered_s: float = Field(description="sum of the turbines' covered_s")
    coverage: float | None = Field(
        description="covered_s / (registered turbines, or 1 for one turbine's series, x the "
        "bucket's elapsed duration), at most 1"
    )
    turbines: list[TurbineBucketStats]


class TurbineBucket(TurbineStats, _BucketTimes):
    pass


class _AggregateWindow(_Answer):
    bucket: Literal["1m", "10m", "1h", "1d"]
    tz: str
    window_start: datetime = Field(description="start of the first bucket")
    window_end: datetime = Field(description="end of the last bucket")
    generated_at: datetime
    complete_until: datetime = Field(
        description="every bucket that ends at or before this instant is complete"
    )


class ParkAggregates(_AggregateWindow):
    buckets: list[ParkBucket] = Field(description="buckets with data, oldest first")


class TurbineAggregates(_AggregateWindow):
    turbine_id: str
    buckets: list[TurbineBucket] = Field(description="buckets with data, oldest first")


class RejectReason(_Answer):
    code: str
    message: str
    field: str | None


class Queued(_Answer):
    """A valid reading handed to the broker: queued for storage, not stored yet."""

    status: Literal["queued"] = Field(
        default="queued",
        description="queued for storage: the broker confirmed the message (persistent); "
        "nothing is in the database yet",
    )
    promise: str = Field(
        default="queued for storage: the concentrator judges the reading again with the "
        "turbine's history, then stores it, keeps it as a conflict (same turbine and ts as "
        "a stored reading, other values), counts it as a duplicate, or keeps it as a reject",
        description="what the 202 promises, in words",
    )
    turbine_id: str
    seq: int
    ts: datetime
    message_id: str = Field(
        description="AMQP message id, and the dedup key under which the concentrator files "
        "the message (duplicate_readings, conflicting_readings, rejected_readings)"
    )
    outcome: Literal["accepted", "flagged"] = Field(
        description="the API's verdict without the turbine's history; the concentrator "
        "judges the reading again before it stores it"
    )
    quality_flags: int = Field(description="bits of QualityFlag (0 when accepted)")
    flags: list[str] = Field(description="names of the quality flags set")


class Rejected(_Answer):
    status: Literal["rejected"] = "rejected"
    reasons: list[RejectReason]


class RejectedAnswer(_Answer):
    detail: Rejected


class ErrorAnswer(_Answer):
    detail: str


class Health(_Answer):
    status: Literal["ok"] = "ok"


class Readiness(_Answer):
    status: Literal["ready", "not ready"]
    checks: dict[str, str]


class _QualityCounts(_Answer):
    received: int = Field(description="stored + rejected + duplicates + conflicts")
    stored: int = Field(description="readings stored (accepted or flagged), by device time")
    clean: int = Field(description="stored without any quality flag")
    flagged: int = Field(description="stored with at least one quality flag")
    flagged_by_kind: dict[str, int] = Field(description="readings per quality flag")
    rejected: int = Field(description="messages rejected (by arrival time)")
    rejected_by_reason: dict[str, int] = Field(description="reject reason code -> messages")
    duplicates: int = Field(
        description="messages absorbed as duplicates: redeliveries, or the same values "
        "again (by device time)"
    )
    conflicts: int = Field(
        description="messages kept as conflicts: same turbine and device time as a stored "
        "reading, other values (by device time); see /v1/conflicts"
    )


class QualityBucket(_QualityCounts):
    """Data quality of one registered turbine in one bucket (UTC hours or days), counting
    only what lies inside the window: a bucket the window cuts is a partial bucket."""

    bucket_start: datetime
    turbine_id: str
    expected: float = Field(
        description="readings expected at the sampling interval over the part of the "
        "bucket that is inside the window and already elapsed"
    )
    completeness: float = Field(description="stored / expected, at most 1; 1 if expected is 0")


class UnattributedRejects(_Answer):
    """Rejects of one bucket whose turbine id is missing, unreadable or not registered:
    in the totals, never in ``buckets`` (such a turbine has no quality of its own)."""

    bucket_start: datetime
    turbine_id: str | None = Field(description="the id as read from the message, if any")
    rejected: int
    rejected_by_reason: dict[str, int]


class QualityTotals(_QualityCounts):
    """Every count of the window: ``buckets`` and ``unattributed`` added up."""


class QualityReport(_Answer):
    bucket: Literal["1h", "1d"]
    start: datetime
    end: datetime
    expected_interval_s: float
    buckets: list[QualityBucket]
    unattributed: list[UnattributedRejects]
    totals: QualityTotals


class Reject(_Answer):
    id: int
    received_at: datetime
    source: str
    turbine_id: str | None
    seq: int | None
    reasons: list[str]
    details: list[RejectReason]
    payload_base64: str = Field(description="the bytes exactly as received")
    payload_text: str = Field(description="the bytes as UTF-8, undecodable bytes replaced")


class RejectPage(_Answer):
    rejects: list[Reject] = Field(description="newest first")
    next_cursor: str | None = Field(description="pass as `cursor` for older rejects")


class ConflictValues(_Answer):
    """The fields that make a reading: compared to tell a conflict from a duplicate."""

    seq: int
    state: str
    power_kw: float
    wind_speed_ms: float
    temperature_c: float
    rotor_rpm: float | None
    pitch_deg: float | None
    nacelle_temperature_c: float | None
    wind_direction_deg: float | None
    setpoint_kw: float | None


class Conflict(_Answer):
    """A reading with the turbine and device time of a stored one, but other values:
    kept beside it, never in its place (aggregates use the stored reading)."""

    id: int
    turbine_id: str
    ts: datetime
    message_id: str = Field(description="dedup key: a redelivery of it is a duplicate")
    source: str
    received_at: datetime
    quality_flags: int
    values: ConflictValues = Field(description="this message's values")
    stored: ConflictValues | None = Field(
        description="the stored reading's values; null once retention removed it"
    )
    differs: list[str] = Field(description="fields whose value differs from the stored one")
    payload_base64: str = Field(description="the bytes exactly as received")
    payload_text: str = Field(description="the bytes as UTF-8, undecodable bytes replaced")


class ConflictPage(_Answer):
    conflicts: list[Conflict] = Field(description="newest first")
    next_cursor: str | None = Field(description="pass as `cursor` for older conflicts")


class PowerCurveBin(_Answer):
    bin_ms: float = Field(description="bin centre, density-normalised wind speed")
    n: int
    wind_avg_ms: float
    power_avg_kw: float
    power_std_kw: float | None
    reference_power_kw: float = Field(description="the model's curve at wind_avg_ms")
    performance_ratio: float | None = Field(description="power_avg_kw / reference_power_kw")


class PowerCurve(_Answer):
    turbine_id: str
    model: str
    rated_power_kw: float
    start: datetime
    end: datetime
    readings_used: int = Field(description="running, without doubts about the values")
    performance_ratio: float | None = Field(
        description="sum(n x measured) / sum(n x reference) over bins with a reference"
    )
    bins: list[PowerCurveBin]


# Tokens (POST /v1/token) --------------------------------------------------------------------


class TokenAnswer(_Answer):
    """RFC 6749 section 5.1."""

    access_token: str = Field(description="a JWT (HS256); send it as `Authorization: Bearer …`")
    token_type: Literal["bearer"] = "bearer"  # noqa: S105 (a token type, not a secret)
    expires_in: int = Field(description="seconds the token stays valid")
    scope: str = Field(description="the granted scopes, space-separated")


class TokenError(_Answer):
    """RFC 6749 section 5.2, with the API's usual `detail`."""

    error: Literal[
        "invalid_request",
        "invalid_grant",
        "invalid_client",
        "invalid_scope",
        "unsupported_grant_type",
    ]
    error_description: str
    detail: str
