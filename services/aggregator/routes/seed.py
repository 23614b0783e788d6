"""The seed specification's paths, in Spanish, as its users call them.

Same work as /v1 (``handlers``); only the paths and the parameter names differ.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Final

from fastapi import APIRouter, Query, Request
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

router = APIRouter(tags=["seed (español)"])


class Intervalo(StrEnum):
    MINUTO = "minuto"
    DIEZ_MINUTOS = "10min"
    HORA = "hora"
    DIA = "dia"


INTERVALOS: Final = {
    Intervalo.MINUTO: BucketSize.MINUTE,
    Intervalo.DIEZ_MINUTOS: BucketSize.TEN_MINUTES,
    Intervalo.HORA: BucketSize.HOUR,
    Intervalo.DIA: BucketSize.DAY,
}
SIZE_NAMES: Final = {size: f"intervalo={name.value}" for name, size in INTERVALOS.items()}
PARAM_NAMES: Final = {
    "from": "desde",
    "to": "hasta",
    "bucket": "intervalo",
    "tz": "zona",
    "per_turbine": "por_generador",
}


@router.get(
    "/datos-generadores/",
    summary="Últimos datos de todos los generadores",
    description="The latest reading of every registered turbine, with its age in seconds. "
    "A turbine that has sent nothing yet is listed with nulls.",
)
async def datos_generadores(conn: ConnectionDep) -> schemas.LatestReadings:
    return await handlers.latest_all(conn)


@router.get(
    "/agregados/",
    summary="Producción agregada del parque por intervalo",
    description="Park mean production and per-turbine statistics per bucket, from the "
    "rollup tables. A bucket is included when its start lies in [desde, hasta); the "
    "current bucket is marked `partial`.",
    response_model=schemas.ParkAggregates,
    responses=NOT_FOUND,
)
async def agregados(
    *,
    conn: ConnectionDep,
    state: StateDep,
    intervalo: Annotated[Intervalo, Query(description="bucket size")] = Intervalo.MINUTO,
    desde: Annotated[
        Instant | None, Query(description="RFC 3339 with offset; default: a window per intervalo")
    ] = None,
    hasta: Annotated[
        Instant | None, Query(description="RFC 3339 with offset; default: now")
    ] = None,
    generador: Annotated[
        str | None, Query(description="only this turbine", pattern=TURBINE_ID_RE.pattern)
    ] = None,
    zona: Annotated[
        str, Query(description="IANA time zone of the day buckets and of the labels")
    ] = "UTC",
    por_generador: Annotated[
        bool,
        Query(description="include each turbine's statistics (false: the park series only)"),
    ] = True,
) -> Response:
    return await handlers.park(
        conn,
        state,
        size=INTERVALOS[intervalo],
        tz=zona,
        start=desde,
        end=hasta,
        turbine_id=generador,
        per_turbine=por_generador,
        names=PARAM_NAMES,
        size_names=SIZE_NAMES,
    )


@router.post(
    "/generador/",
    summary="Enviar una lectura de un generador",
    description="Validated like every reading; a valid one is queued to the broker (202), "
    "an invalid one is kept in rejected_readings and answered with its reasons (422).",
    status_code=202,
    response_model=schemas.Queued,
    responses=POST_RESPONSES,
    openapi_extra=READING_BODY,
)
@requires(Scope.READINGS_WRITE)
async def generador(request: Request, state: StateDep, principal: PrincipalDep) -> JSONResponse:
    return await handlers.post_reading(request, state, claimed_turbine_id=principal.turbine_id)
