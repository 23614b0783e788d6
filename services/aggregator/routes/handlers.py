"""The work behind both route sets: the Spanish seed paths and /v1 parse their own
parameters and call these, so the two can never disagree."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Final

import asyncpg
from fastapi import HTTPException, Request
from fastapi.responses import JSONResponse, Response

from services.aggregator import aggregates, queries, schemas
from services.aggregator.buckets import BucketSize, WindowError, parse_zone, resolve_window
from services.aggregator.ingest import BrokerUnavailableError, Queued, ingest_http
from services.aggregator.params import query_error, window_error
from services.aggregator.state import AppState
from windpark import contract
from windpark.db import Connection

log = logging.getLogger("windpark.aggregator")

READINGS_PAGE_MAX: Final = 10_000
DEFAULT_READINGS_WINDOW: Final = timedelta(hours=1)


def not_found(turbine_id: str) -> HTTPException:
    return HTTPException(status_code=404, detail=f"turbine {turbine_id!r} is not registered")


async def require_turbine(conn: Connection, turbine_id: str) -> None:
    if not await queries.turbine_exists(conn, turbine_id):
        raise not_found(turbine_id)


def _latest(row: asyncpg.Record) -> schemas.LatestReading:
    return schemas.LatestReading.model_validate({k: v for k, v in row.items() if k != "as_of"})


async def latest_all(conn: Connection) -> schemas.LatestReadings:
    rows = await queries.fetch_latest(conn)
    as_of = rows[0]["as_of"] if rows else await queries.database_now(conn)
    return schemas.LatestReadings(as_of=as_of, turbines=[_latest(r) for r in rows])


async def latest_one(conn: Connection, turbine_id: str) -> schemas.LatestReading:
    rows = await queries.fetch_latest(conn, turbine_id)
    if not rows:
        raise not_found(turbine_id)
    return _latest(rows[0])


async def turbines(conn: Connection) -> schemas.TurbineList:
    rows = await queries.fetch_turbines(conn)
    return schemas.TurbineList(turbines=[schemas.Turbine.model_validate(dict(r)) for r in rows])


async def readings(
    conn: Connection,
    turbine_id: str,
    *,
    start: datetime | None,
    end: datetime | None,
    limit: int,
    cursor: str | None,
) -> schemas.ReadingPage:
    await require_turbine(conn, turbine_id)
    end = end or datetime.now(UTC)
    try:
        start = start or end - DEFAULT_READINGS_WINDOW
    except OverflowError as exc:
        raise query_error("to", "`to` is outside the supported dates", "out_of_range") from exc
    if start >= end:
        raise query_error("to", "`to` (default: now) must be later than `from`", "window_order")
    after = None
    if cursor is not None:
        try:
            after = queries.decode_cursor(cursor)
        except ValueError as exc:
            raise query_error("cursor", str(exc), "invalid_cursor") from exc
    # One row more than asked tells whether there is a next page.
    rows = await queries.fetch_readings(
        conn, turbine_id, start=start, end=end, after=after, limit=limit + 1
    )
    page = rows[:limit]
    next_cursor = queries.encode_cursor(page[-1]["ts"]) if len(rows) > limit else None
    return schemas.ReadingPage(
        turbine_id=turbine_id,
        window_start=start,
        window_end=end,
        readings=[schemas.Reading.model_validate(dict(r)) for r in page],
        next_cursor=next_cursor,
    )


async def park(
    conn: Connection,
    state: AppState,
    *,
    size: BucketSize,
    tz: str,
    start: datetime | None,
    end: datetime | None,
    turbine_id: str | None,
    names: dict[str, str],
    size_names: dict[BucketSize, str] | None = None,
    per_turbine: bool = True,
) -> Response:
    """Park aggregates (``schemas.ParkAggregates``), optionally of one turbine (the
    seed's ``generador``); without the per-turbine breakdown the answer is one series,
    so longer windows fit the cap."""
    if turbine_id is not None:
        await require_turbine(conn, turbine_id)
        series = 1
    elif not per_turbine:
        series = 1
    else:
        series = await queries.count_turbines(conn)
    now = datetime.now(UTC)
    try:
        window = resolve_window(
            size,
            parse_zone(tz),
            start=start,
            end=end,
            now=now,
            turbines=series,
            max_points=state.settings.max_points,
            size_names=size_names,
            breakdown_param=names.get("per_turbine", "per_turbine"),
        )
    except WindowError as exc:
        raise window_error(exc, names) from exc
    try:
        answer = await aggregates.park_aggregates(
            conn, window, now=now, turbine_id=turbine_id, per_turbine=per_turbine
        )
    except asyncpg.InvalidParameterValueError as exc:
        raise _zone_unknown_to_database(tz, names.get("tz", "tz")) from exc
    return aggregates.answer_json(answer)


async def turbine(
    conn: Connection,
    state: AppState,
    turbine_id: str,
    *,
    size: BucketSize,
    tz: str,
    start: datetime | None,
    end: datetime | None,
) -> Response:
    """One turbine's aggregates (``schemas.TurbineAggregates``)."""
    await require_turbine(conn, turbine_id)
    now = datetime.now(UTC)
    try:
        window = resolve_window(
            size,
            parse_zone(tz),
            start=start,
            end=end,
            now=now,
            turbines=1,
            max_points=state.settings.max_points,
        )
    except WindowError as exc:
        raise window_error(exc) from exc
    try:
        answer = await aggregates.turbine_aggregates(conn, window, now=now, turbine_id=turbine_id)
    except asyncpg.InvalidParameterValueError as exc:
        raise _zone_unknown_to_database(tz, "tz") from exc
    return aggregates.answer_json(answer)


def _zone_unknown_to_database(tz: str, param: str) -> HTTPException:
    # Python's zone database (tzdata) can be newer than PostgreSQL's.
    return query_error(param, f"time zone {tz!r} is not known to the database", "unknown_tz")


# Ingest -------------------------------------------------------------------------------------


class BodyTooLargeError(Exception):
    pass


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused as soon as it passes ``limit`` bytes.

    Content-Length is only a hint (a chunked body has none, a client may lie), so the
    bytes are counted as they arrive.
    """
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLargeError
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise BodyTooLargeError
            chunks.append(chunk)
    except HTTPException as exc:
        # The app-wide limit (body_limit.py) may stop the stream first.
        if exc.status_code == 413:
            raise BodyTooLargeError from exc
        raise
    return b"".join(chunks)


def _is_json(content_type: str | None) -> bool:
    if not content_type:
        return False
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    )


async def post_reading(
    request: Request, state: AppState, *, claimed_turbine_id: str | None = None
) -> JSONResponse:
    """``claimed_turbine_id``: the turbine the sender's token is bound to, if any."""
    settings = state.settings
    metrics = state.metrics
    retry_after = {"Retry-After": str(settings.retry_after_s)}
    if not _is_json(request.headers.get("content-type")):
        metrics.ingest.labels("unsupported_media_type").inc()
        return JSONResponse(
            {"detail": f"send the reading as {contract.CONTENT_TYPE}"}, status_code=415
        )
    try:
        raw = await read_body(request, settings.max_body_bytes)
    except BodyTooLargeError:
        metrics.ingest.labels("too_large").inc()
        return JSONResponse(
            {"detail": f"request body larger than {settings.max_body_bytes} bytes"},
            status_code=413,
            # The rest of the body is not read: the connection cannot be reused.
            headers={"Connection": "close"},
        )
    try:
        result = await ingest_http(
            raw,
            now=datetime.now(UTC),
            pool=state.pool,
            registry=state.registry,
            publisher=state.broker.publisher,
            publish_timeout_s=settings.publish_timeout_s,
            claimed_turbine_id=claimed_turbine_id,
        )
    except BrokerUnavailableError as exc:
        metrics.ingest.labels("unavailable").inc()
        log.warning("HTTP reading not queued: %s", exc)
        return JSONResponse(
            {"detail": "the message broker is unavailable; send the reading again later"},
            status_code=503,
            headers=retry_after,
        )
    if isinstance(result, Queued):
        metrics.ingest.labels("queued").inc()
        body = schemas.Queued(
            turbine_id=result.turbine_id,
            seq=result.seq,
            ts=result.ts,
            message_id=result.message_id,
            outcome="flagged" if result.flags else "accepted",
            quality_flags=int(result.flags),
            flags=[flag.name or str(int(flag)) for flag in result.flags],
        )
        return JSONResponse(body.model_dump(mode="json"), status_code=202)
    metrics.ingest.labels("rejected").inc()
    for reason in result.reasons:
        metrics.reject_reasons.labels(str(reason.code)).inc()
    if result.impersonation:
        return JSONResponse(
            {
                "detail": f"this token may only send readings of turbine {claimed_turbine_id!r};"
                " the message is kept as a reject (turbine_mismatch)"
            },
            status_code=403,
        )
    detail = schemas.Rejected(
        reasons=[
            schemas.RejectReason(code=str(r.code), message=r.message, field=r.field)
            for r in result.reasons
        ]
    )
    return JSONResponse({"detail": detail.model_dump(mode="json")}, status_code=422)
