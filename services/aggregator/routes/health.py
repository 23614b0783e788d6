"""Liveness, readiness and metrics."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse

from services.aggregator import queries, schemas
from services.aggregator.deps import StateDep
from services.aggregator.metrics import METRICS_CONTENT_TYPE

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="The process is alive (no I/O)")
async def healthz() -> schemas.Health:
    return schemas.Health()


@router.get(
    "/readyz",
    summary="The database answers and the broker connection is open",
    responses={503: {"model": schemas.Readiness, "description": "a dependency is down"}},
)
async def readyz(state: StateDep) -> JSONResponse:
    checks: dict[str, str] = {}
    try:
        async with asyncio.timeout(state.settings.readiness_timeout_s):
            async with state.pool.acquire() as conn:
                await queries.ping(conn)
        checks["database"] = "ok"
    except Exception as exc:  # any failure means not ready; the reason is reported
        checks["database"] = f"down: {type(exc).__name__}"
    broker = state.broker
    checks["broker"] = (
        "ok" if broker.is_connected else f"down: {broker.last_error or 'reconnecting'}"
    )
    ready = all(v == "ok" for v in checks.values())
    body = schemas.Readiness(status="ready" if ready else "not ready", checks=checks)
    return JSONResponse(body.model_dump(), status_code=200 if ready else 503)


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def metrics(state: StateDep) -> Response:
    return Response(state.metrics.render(), media_type=METRICS_CONTENT_TYPE)
