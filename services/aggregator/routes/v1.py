"""The versioned English API. Same work as the seed paths (``handlers``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import JSONResponse, Response

from services.aggregator import schemas
from services.aggregator.buckets import BucketSize
from services.aggregator.deps import ConnectionDep, StateDep
from services.aggregator.params import Instant
from services.aggregator.routes import handlers
from services.aggregator.routes.openapi import NOT_FOUND, POST_RESPONSES, READING_BODY
from services.aggregator.security import PrincipalDep, requires
from windpark.contract import TURBINE_ID_RE
from windpark.credentials import Scope

router = APIRouter(prefix="/v1")

TurbineId = Annotated[str, Path(pattern=TURBINE_ID_RE.pattern, description="turbine id")]
From = Annotated[
    Instant | None,
    Query(alias="from", description="RFC 3339 with offset (Z or ±HH:MM); naive is refused"),
]
To = Annotated[Instant | None, Query(alias="to", description="RFC 3339 with offset; default now")]
Bucket = Annotated[BucketSize, Query(description="bucket size")]
Tz = Annotated[str, Query(description="IANA time zone: day buckets are its local days")]


@router.get("/turbines", tags=["turbines"], summary="The turbine registry")
async def list_turbines(conn: ConnectionDep) -> schemas.TurbineList:
    return await handlers.turbines(conn)


@router.get(
    "/turbines/latest",
    tags=["turbines"],
    summary="Latest reading of every registered turbine",
)
async def latest_all(conn: ConnectionDep) -> schemas.LatestReadings:
    return await handlers.latest_all(conn)


@router.get(
    "/turbines/{turbine_id}/latest",
    tags=["turbines"],
    summary="Latest reading of one turbine",
    responses=NOT_FOUND,
)
async def latest_one(conn: ConnectionDep, turbine_id: TurbineId) -> schemas.LatestReading:
    return await handlers.latest_one(conn, turbine_id)


@router.get(
    "/turbines/{turbine_id}/readings",
    tags=["turbines"],
    summary="Raw readings of one turbine, oldest first, in pages",
    description="Keyset pagination by ts: pass `next_cursor` back as `cursor` until it is "
    "null. Default window: the hour before `to`.",
    responses=NOT_FOUND,
)
async def readings(
    *,
    conn: ConnectionDep,
    turbine_id: TurbineId,
    start: From = None,
    end: To = None,
    limit: Annotated[int, Query(ge=1, le=handlers.READINGS_PAGE_MAX)] = 1000,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> schemas.ReadingPage:
    return await handlers.readings(
        conn, turbine_id, start=start, end=end, limit=limit, cursor=cursor
    )


@router.get(
    "/park/aggregates",
    tags=["aggregates"],
    response_model=schemas.ParkAggregates,
    summary="Park statistics per bucket, with each turbine's",
    description="From the rollup tables. A bucket is included when its start lies in "
    "[from, to); the current one is marked `partial`.",
)
async def park_aggregates(
    *,
    conn: ConnectionDep,
    state: StateDep,
    bucket: Bucket = BucketSize.HOUR,
    start: From = None,
    end: To = None,
    tz: Tz = "UTC",
    per_turbine: Annotated[
        bool,
        Query(description="include each turbine's statistics (false: the park series only)"),
    ] = True,
) -> Response:
    return await handlers.park(
        conn,
        state,
        size=bucket,
        tz=tz,
        start=start,
        end=end,
        turbine_id=None,
        names={},
        per_turbine=per_turbine,
    )


@router.get(
    "/turbines/{turbine_id}/aggregates",
    tags=["aggregates"],
    summary="Statistics of one turbine per bucket",
    response_model=schemas.TurbineAggregates,
    responses=NOT_FOUND,
)
async def turbine_aggregates(
    *,
    conn: ConnectionDep,
    state: StateDep,
    turbine_id: TurbineId,
    bucket: Bucket = BucketSize.HOUR,
    start: From = None,
    end: To = None,
    tz: Tz = "UTC",
) -> Response:
    return await handlers.turbine(conn, state, turbine_id, size=bucket, tz=tz, start=start, end=end)


@router.post(
    "/readings",
    tags=["ingest"],
    summary="Send one reading",
    description="Validated like every reading; a valid one is queued to the broker (202), "
    "an invalid one is kept in rejected_readings and answered with its reasons (422).",
    status_code=202,
    response_model=schemas.Queued,
    responses=POST_RESPONSES,
    openapi_extra=READING_BODY,
)
@requires(Scope.READINGS_WRITE)
async def post_reading(request: Request, state: StateDep, principal: PrincipalDep) -> JSONResponse:
    return await handlers.post_reading(request, state, claimed_turbine_id=principal.turbine_id)
