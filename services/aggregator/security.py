"""Who may call what: one app-wide dependency, so that a new route is protected by default.

``authorize`` runs before every route of the app. It lets through only the routes in
``PUBLIC_PATHS`` (health and the token endpoint; the docs are not API routes and
never reach it); every other route needs a valid bearer token with the route's scope:

- the scope a route declares with ``@requires(scope)``, else
- ``telemetry:read`` for GET and HEAD, ``admin`` for any other method (a new write
  route is admin-only until it says what it needs).

401 (with ``WWW-Authenticate: Bearer``) when the token is missing, invalid or revoked
(its account deleted, disabled or changed since: ``revocation``), 403 when its scopes
are not enough. ``document_security`` writes the same rules into OpenAPI,
so /docs can "Authorize" and tools see which scope each operation needs.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Annotated, Any, Final, TypeVar

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.routing import APIRoute, iter_route_contexts
from starlette.routing import BaseRoute

from services.aggregator import tokens
from services.aggregator.deps import StateDep
from services.aggregator.tokens import InvalidTokenError, Principal
from windpark.credentials import SCOPE_DESCRIPTIONS, Scope

log = logging.getLogger("windpark.aggregator.security")

TOKEN_PATH: Final = "/v1/token"  # noqa: S105 (a path, not a secret)
# The only API routes anyone may call without a token. Keep this list short.
PUBLIC_PATHS: Final = frozenset({"/healthz", "/readyz", TOKEN_PATH})
SAFE_METHODS: Final = frozenset({"GET", "HEAD"})
SECURITY_SCHEME: Final = "OAuth2"
# The same tokens, for clients that already hold one (paste it in /docs "Authorize").
BEARER_SCHEME: Final = "BearerJWT"
_SCOPE_ATTRIBUTE: Final = "__windpark_scope__"

Endpoint = TypeVar("Endpoint", bound=Callable[..., Any])


def requires(scope: Scope) -> Callable[[Endpoint], Endpoint]:
    """Declare the scope a route needs, instead of the default for its method."""

    def mark(endpoint: Endpoint) -> Endpoint:
        setattr(endpoint, _SCOPE_ATTRIBUTE, scope)
        return endpoint

    return mark


def is_public(route: BaseRoute) -> bool:
    return getattr(route, "path", None) in PUBLIC_PATHS


def required_scope(route: APIRoute, method: str) -> Scope:
    declared = getattr(route.endpoint, _SCOPE_ATTRIBUTE, None)
    if isinstance(declared, Scope):
        return declared
    return Scope.TELEMETRY_READ if method.upper() in SAFE_METHODS else Scope.ADMIN


def api_routes(app: FastAPI) -> Iterator[tuple[APIRoute, str, set[str]]]:
    """Every API route of the app, with the path and methods it is served under (the
    routers are included, not copied, so ``app.routes`` alone does not list them)."""
    for context in iter_route_contexts(app.routes):
        route = context.original_route
        if isinstance(route, APIRoute):
            yield route, context.path_format or route.path_format, set(context.methods or ())


def _unauthorized(detail: str, *, error: str | None = None) -> HTTPException:
    challenge = 'Bearer realm="windpark"'
    if error:
        challenge += f', error="{error}"'
    return HTTPException(status_code=401, detail=detail, headers={"WWW-Authenticate": challenge})


def _bearer_token(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if header is None:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


async def authorize(request: Request, state: StateDep) -> Principal | None:
    """The app-wide gate (``FastAPI(dependencies=...)``); None on public routes only."""
    route = request.scope.get("route")
    if route is None:
        # Every dependency runs inside a matched route; without one, refuse rather than guess.
        raise _unauthorized("authentication required")
    if is_public(route):
        return None
    token = _bearer_token(request)
    if token is None:
        raise _unauthorized("authentication required: send a bearer token from POST /v1/token")
    try:
        principal = tokens.verify(token, state.auth.ring, state.auth.policy)
    except InvalidTokenError as exc:
        log.info("refused token on %s: %s", request.url.path, exc)
        raise _unauthorized("invalid or expired token", error="invalid_token") from exc
    if not await state.auth.versions.is_current(principal.subject, principal.token_version):
        # Deleted, disabled, or changed (password, secret, scopes) since it was issued.
        log.info("refused revoked token of %s on %s", principal.subject, request.url.path)
        raise _unauthorized("invalid or expired token", error="invalid_token")
    scope = required_scope(route, request.method) if isinstance(route, APIRoute) else Scope.ADMIN
    if not principal.allows(scope):
        raise HTTPException(
            status_code=403,
            detail=f"this token lacks the scope {scope.value!r}",
            headers={
                "WWW-Authenticate": f'Bearer realm="windpark", error="insufficient_scope", '
                f'scope="{scope.value}"'
            },
        )
    return principal


async def current_principal(
    principal: Annotated[Principal | None, Depends(authorize)],
) -> Principal:
    # Same callable as the app-wide dependency: FastAPI runs it once per request.
    if principal is None:
        raise _unauthorized("authentication required")
    return principal


PrincipalDep = Annotated[Principal, Depends(current_principal)]


_ERROR_SCHEMA: Final = {
    "type": "object",
    "properties": {"detail": {"type": "string"}},
    "required": ["detail"],
}


def document_security(app: FastAPI) -> None:
    """Add the OAuth2 scheme (password and client-credentials flows on /v1/token) and, on
    every protected operation, its scope and its 401/403 answers."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = generate()
        scopes = {s.value: SCOPE_DESCRIPTIONS[s] for s in Scope}
        components = schema.setdefault("components", {})
        schemes = components.setdefault("securitySchemes", {})
        schemes[SECURITY_SCHEME] = {
            "type": "oauth2",
            "description": "Bearer JWTs from POST /v1/token, valid for 15 minutes by default.",
            "flows": {
                "password": {"tokenUrl": TOKEN_PATH, "scopes": scopes},
                "clientCredentials": {"tokenUrl": TOKEN_PATH, "scopes": scopes},
            },
        }
        schemes[BEARER_SCHEME] = {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "JWT",
            "description": "A token from POST /v1/token; the operation's scope (see OAuth2) "
            "must be among the token's.",
        }
        for route, path, methods in api_routes(app):
            if not route.include_in_schema or is_public(route):
                continue
            for method in methods:
                operation = schema["paths"].get(path, {}).get(method.lower())
                if operation is None:
                    continue
                # Alternatives: the OAuth2 flows (naming the scope), or a token in hand.
                operation["security"] = [
                    {SECURITY_SCHEME: [required_scope(route, method).value]},
                    {BEARER_SCHEME: []},
                ]
                responses = operation.setdefault("responses", {})
                for status, description in (
                    ("401", "no token, or an invalid or expired one"),
                    ("403", "the token lacks the scope this operation needs"),
                ):
                    responses.setdefault(
                        status,
                        {
                            "description": description,
                            "content": {"application/json": {"schema": _ERROR_SCHEMA}},
                        },
                    )
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
