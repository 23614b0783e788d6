"""The aggregator's composition root: ``create_app(settings)`` wires everything once."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Final

import asyncpg
from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.aggregator.body_limit import BodyLimitMiddleware
from services.aggregator.broker import BrokerLink
from services.aggregator.config import Settings
from services.aggregator.login import LoginService
from services.aggregator.login_limits import FailureLimiter, LoginLimits
from services.aggregator.metrics import ApiMetrics, MetricsMiddleware
from services.aggregator.registry_cache import RegistryCache
from services.aggregator.revocation import TokenVersions
from services.aggregator.routes import health, quality, seed, token, v1
from services.aggregator.routes.docs import add_docs
from services.aggregator.routes.openapi import keep_exact_reading_body
from services.aggregator.security import authorize, document_security
from services.aggregator.state import STATE_KEY, AppState
from services.aggregator.tokens import KeyRing, TokenPolicy

log = logging.getLogger("windpark.aggregator")

DESCRIPTION: Final = """
Wind-farm telemetry: the latest value of every turbine, park and turbine aggregates
from the rollup tables (1 minute, 10 minutes, 1 hour, local days), raw history, and
HTTP ingest of readings (validated, then queued to the broker like any other reading).

The Spanish paths (`/datos-generadores/`, `/agregados/`, `/generador/`) are the seed
specification's; `/v1` is the same API in English. Every number carries its unit in
its name; every time is RFC 3339 with an offset.

Every path but `/healthz`, `/readyz` and `/v1/token` needs a bearer token: ask
`POST /v1/token` (or use "Authorize" here). GET needs the scope `telemetry:read`,
sending readings `readings:write`; `admin` implies every scope.
"""

OPENAPI_TAGS: Final = [
    {"name": "seed (español)", "description": "The paths of the seed specification."},
    {"name": "auth", "description": "OAuth2 tokens for people (password) and machines."},
    {"name": "turbines", "description": "Registry, latest values and raw history."},
    {"name": "aggregates", "description": "Statistics per bucket, from the rollup tables."},
    {"name": "quality", "description": "Data quality reports and the rejected messages."},
    {"name": "analysis", "description": "Power-curve analysis."},
    {"name": "ingest", "description": "Readings over HTTP."},
    {"name": "health", "description": "Liveness, readiness and Prometheus metrics."},
]

# Database failures a client can do nothing about but retry later.
DATABASE_UNAVAILABLE: Final = (
    OSError,  # refused connection, and TimeoutError (a pool or command timeout)
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.OperatorInterventionError,  # admin shutdown, cannot connect now
    asyncpg.exceptions.InsufficientResourcesError,  # too many connections
)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    metrics = ApiMetrics()
    # A missing, short or placeholder signing key stops the start-up here.
    ring = KeyRing.from_settings(settings.api)
    token_policy = TokenPolicy.from_settings(settings.api)
    login_limits = LoginLimits(
        pairs=FailureLimiter(
            max_failures=settings.api.login_max_failures,
            window_s=settings.api.login_window_s,
            clock=time.monotonic,
        ),
        accounts=FailureLimiter(
            max_failures=settings.api.login_max_failures_per_account,
            window_s=settings.api.login_window_s,
            clock=time.monotonic,
        ),
        addresses=FailureLimiter(
            max_failures=settings.api.login_max_failures_per_address,
            window_s=settings.api.login_window_s,
            clock=time.monotonic,
        ),
    )

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[dict[str, Any]]:
        # A broker that is down is waited for; broker settings that cannot work (no user,
        # no password, an unreadable CA) are a configuration error: refuse to start.
        settings.broker.url()
        settings.broker.ssl_context()
        pool = await asyncpg.create_pool(
            settings.db.dsn(),
            min_size=settings.db.pool_min_size,
            max_size=settings.db.pool_max_size,
            command_timeout=settings.db_command_timeout_s,
        )
        broker = BrokerLink(
            settings.broker,
            retry_initial_s=settings.broker_retry_initial_s,
            retry_max_s=settings.broker_retry_max_s,
        )
        try:
            broker.start()
            state = AppState(
                settings=settings,
                pool=pool,
                broker=broker,
                registry=RegistryCache(refresh_interval_s=settings.registry_refresh_s),
                metrics=metrics,
                auth=LoginService(
                    pool=pool,
                    ring=ring,
                    policy=token_policy,
                    limits=login_limits,
                    versions=TokenVersions(pool, max_age_s=settings.api.token_version_max_age_s),
                    hashing=asyncio.Semaphore(settings.api.max_concurrent_hashes),
                ),
            )
            yield {STATE_KEY: state}
        finally:
            try:
                await broker.close()
            finally:
                await pool.close()

    app = FastAPI(
        title="windpark",
        version="1",
        description=DESCRIPTION,
        openapi_tags=OPENAPI_TAGS,
        lifespan=lifespan,
        # Swagger UI from a package instead of a CDN (routes/docs.py); no ReDoc: it has no
        # packaged assets, and a docs page that is blank offline is worse than none.
        docs_url=None,
        redoc_url=None,
        # Before any route: a token, with the route's scope, unless the route is public
        # (services/aggregator/security.py). Routers added below are covered by it.
        dependencies=[Depends(authorize)],
    )
    app.include_router(seed.router)
    app.include_router(v1.router)
    app.include_router(quality.router)
    app.include_router(health.router)
    app.include_router(token.router)
    document_security(app)
    keep_exact_reading_body(app)
    add_docs(app)
    _add_error_handlers(app, settings)

    # Outermost last: security headers wrap everything, metrics see every answer.
    # Every body, chunked included, is counted as it is read and refused past the limit.
    app.add_middleware(BodyLimitMiddleware, max_body_bytes=settings.max_body_bytes)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_credentials=settings.cors_allow_credentials,
            allow_methods=["GET", "POST"],
            allow_headers=["Content-Type", "Authorization"],
        )
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    app.add_middleware(SecurityHeadersMiddleware)
    return app


def _add_error_handlers(app: FastAPI, settings: Settings) -> None:
    retry_after = {"Retry-After": str(settings.retry_after_s)}

    async def database_unavailable(request: Request, exc: Exception) -> JSONResponse:
        log.warning("database unavailable on %s: %r", request.url.path, exc)
        return JSONResponse(
            {"detail": "the database is unavailable; try again later"},
            status_code=503,
            headers=retry_after,
        )

    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        # Logged with its traceback; the client gets no internals.
        log.error("unhandled error on %s", request.url.path, exc_info=exc)
        return JSONResponse({"detail": "internal server error"}, status_code=500)

    async def unstorable_character(request: Request, exc: Exception) -> JSONResponse:
        # PostgreSQL text cannot hold NUL: a parameter with one can match nothing, and is
        # the client's mistake, not a server error (schemathesis finds these).
        return JSONResponse(
            {
                "detail": [
                    {
                        "type": "invalid_character",
                        "loc": ["query"],
                        "msg": "a parameter holds a character the database cannot hold (NUL)",
                    }
                ]
            },
            status_code=422,
        )

    async def invalid_request(request: Request, exc: Exception) -> JSONResponse:
        errors = exc.errors() if isinstance(exc, RequestValidationError) else []
        # FastAPI's own shape, without echoing `ctx` objects that are not JSON.
        detail = [
            {"type": e.get("type"), "loc": list(e.get("loc", ())), "msg": e.get("msg")}
            for e in errors
        ]
        return JSONResponse({"detail": detail}, status_code=422)

    for exc_class in DATABASE_UNAVAILABLE:
        app.add_exception_handler(exc_class, database_unavailable)
    app.add_exception_handler(RequestValidationError, invalid_request)
    app.add_exception_handler(
        asyncpg.exceptions.CharacterNotInRepertoireError, unstorable_character
    )
    app.add_exception_handler(Exception, unexpected)


class SecurityHeadersMiddleware:
    """Headers every answer carries: no sniffing, no framing, no caching of live data;
    and HSTS when the request came over TLS (directly, or through a trusted proxy that
    said so in X-Forwarded-Proto): over plain HTTP the header means nothing and would
    only pin a name that may not have TLS yet."""

    HEADERS: Final = (
        (b"x-content-type-options", b"nosniff"),
        (b"content-security-policy", b"frame-ancestors 'none'"),
        (b"x-frame-options", b"DENY"),
        (b"referrer-policy", b"no-referrer"),
        (b"cache-control", b"no-store"),
    )
    HSTS: Final = (b"strict-transport-security", b"max-age=31536000")

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                headers += [(n, v) for n, v in self.HEADERS if n not in present]
                if scope.get("scheme") == "https" and self.HSTS[0] not in present:
                    headers.append(self.HSTS)
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)
