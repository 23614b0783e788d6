"""Data quality and analysis: the quality report, the rejects with their payloads, and
the measured power curve."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query

from services.aggregator import quality, queries, schemas
from services.aggregator.deps import ConnectionDep, SettingsDep
from services.aggregator.params import IdCursor, Instant, query_error
from services.aggregator.routes.handlers import not_found, require_turbine
from services.aggregator.routes.openapi import NOT_FOUND
from windpark import power_curve
from windpark.contract import TURBINE_ID_RE
from windpark.db import Connection
from windpark.turbine_model import load_model
from windpark.validation import ReasonCode

router = APIRouter(prefix="/v1")

TurbineId = Annotated[str, Path(pattern=TURBINE_ID_RE.pattern, description="turbine id")]
From = Annotated[Instant | None, Query(alias="from", description="RFC 3339 with offset")]
To = Annotated[Instant | None, Query(alias="to", description="RFC 3339 with offset; default now")]
QualityBucketParam = Annotated[Literal["1h", "1d"], Query(description="UTC hours or days")]


async def _window(
    conn: Connection,
    start: datetime | None,
    end: datetime | None,
    default: timedelta,
    max_days: int,
    *,
    now: datetime | None = None,
) -> tuple[datetime, datetime]:
    end = end or now or await queries.database_now(conn)
    try:
        start = start or end - default
    except OverflowError as exc:  # `to` in year 1: no default window fits before it
        raise query_error("to", "`to` is outside the supported dates", "out_of_range") from exc
    if start >= end:
        raise query_error("to", "`from` must be before `to`", "window_order")
    if end - start > timedelta(days=max_days):
        raise query_error(
            "from",
            f"the window is longer than {max_days} days; ask for a shorter one",
            "window_too_long",
        )
    return start, end


@router.get(
    "/quality",
    tags=["quality"],
    summary="Data quality of every turbine per hour or day",
    description="Per registered turbine and bucket: received, stored, clean, flagged (by "
    "kind), rejected (by reason), duplicates, conflicts and completeness, counting only "
    "the rows inside [from, to) (a bucket the window cuts is partial). Rejects whose "
    "turbine id is missing, unreadable or not registered are listed under `unattributed`; "
    "`totals` adds up both. Default: the last 24 hours.",
)
async def park_quality(
    *,
    conn: ConnectionDep,
    settings: SettingsDep,
    start: From = None,
    end: To = None,
    bucket: QualityBucketParam = "1h",
) -> schemas.QualityReport:
    return await _report(
        conn, settings.expected_interval_s, settings.max_analysis_days, start, end, bucket, None
    )


@router.get(
    "/turbines/{turbine_id}/quality",
    tags=["quality"],
    summary="Data quality of one turbine per hour or day",
    description="As /v1/quality for one registered turbine (404 for any other: the rejects "
    "of an unregistered id are in /v1/quality's `unattributed`).",
    responses=NOT_FOUND,
)
async def turbine_quality(
    *,
    conn: ConnectionDep,
    settings: SettingsDep,
    turbine_id: TurbineId,
    start: From = None,
    end: To = None,
    bucket: QualityBucketParam = "1h",
) -> schemas.QualityReport:
    await require_turbine(conn, turbine_id)
    return await _report(
        conn,
        settings.expected_interval_s,
        settings.max_analysis_days,
        start,
        end,
        bucket,
        turbine_id,
    )


async def _report(  # noqa: PLR0917 (private; both routes pass the same seven)
    conn: Connection,
    expected_interval_s: float,
    max_days: int,
    start: datetime | None,
    end: datetime | None,
    bucket: Literal["1h", "1d"],
    turbine_id: str | None,
) -> schemas.QualityReport:
    now = await queries.database_now(conn)
    start, end = await _window(conn, start, end, timedelta(hours=24), max_days, now=now)
    buckets, unattributed, totals = await quality.fetch_quality(
        conn,
        start=start,
        end=end,
        now=now,
        bucket=bucket,
        turbine_id=turbine_id,
        expected_interval_s=expected_interval_s,
    )
    return schemas.QualityReport(
        bucket=bucket,
        start=start,
        end=end,
        expected_interval_s=expected_interval_s,
        buckets=buckets,
        unattributed=unattributed,
        totals=totals,
    )


@router.get(
    "/rejects",
    tags=["quality"],
    summary="Rejected messages with their reasons and the bytes as received, newest first",
)
async def rejects(
    *,
    conn: ConnectionDep,
    settings: SettingsDep,
    start: From = None,
    end: To = None,
    turbine_id: Annotated[str | None, Query(max_length=64)] = None,
    reason: Annotated[ReasonCode | None, Query(description="only rejects with this code")] = None,
    source: Annotated[Literal["amqp", "mqtt", "http"] | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: IdCursor = None,
) -> schemas.RejectPage:
    start, end = await _window(conn, start, end, timedelta(days=7), settings.max_analysis_days)
    return await quality.fetch_rejects(
        conn,
        start=start,
        end=end,
        turbine_id=turbine_id,
        reason=reason,
        source=source,
        before_id=int(cursor) if cursor else None,
        limit=limit,
    )


@router.get(
    "/conflicts",
    tags=["quality"],
    summary="Readings kept as conflicts, with their values and bytes, newest first",
    description="A conflict is a reading with the turbine and device time (ts) of a stored "
    "one but other values. It is kept here with the bytes as received and beside the stored "
    "reading's values; the stored reading stays the one that aggregates use. A redelivery "
    "of the same message, or the same values again, is a duplicate instead. The window "
    "selects by ts. Default: the last 7 days.",
)
async def conflicts(
    *,
    conn: ConnectionDep,
    settings: SettingsDep,
    start: From = None,
    end: To = None,
    turbine_id: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: IdCursor = None,
) -> schemas.ConflictPage:
    start, end = await _window(conn, start, end, timedelta(days=7), settings.max_analysis_days)
    return await quality.fetch_conflicts(
        conn,
        start=start,
        end=end,
        turbine_id=turbine_id,
        before_id=int(cursor) if cursor else None,
        limit=limit,
    )


@router.get(
    "/turbines/{turbine_id}/power-curve",
    tags=["analysis"],
    summary="Measured power curve (IEC 61400-12-1 method of bins) against the model's",
    description="0.5 m/s bins of density-normalised wind speed, running readings without "
    "doubts about their values; performance ratio per bin and energy-weighted overall. "
    "Default: the last 7 days.",
    responses=NOT_FOUND,
)
async def turbine_power_curve(
    *,
    conn: ConnectionDep,
    settings: SettingsDep,
    turbine_id: TurbineId,
    start: From = None,
    end: To = None,
) -> schemas.PowerCurve:
    model_name = await queries.turbine_model(conn, turbine_id)
    if model_name is None:
        raise not_found(turbine_id)
    start, end = await _window(conn, start, end, timedelta(days=7), settings.max_analysis_days)
    curve = await power_curve.measure(
        conn, turbine_id, load_model(model_name), start, end, altitude_m=settings.site_altitude_m
    )
    return schemas.PowerCurve(
        turbine_id=turbine_id,
        model=curve.model,
        rated_power_kw=curve.rated_power_kw,
        start=start,
        end=end,
        readings_used=curve.readings_used,
        performance_ratio=curve.performance_ratio,
        bins=[schemas.PowerCurveBin.model_validate(b, from_attributes=True) for b in curve.bins],
    )
