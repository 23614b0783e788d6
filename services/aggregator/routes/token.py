"""``POST /v1/token``: the OAuth2 token endpoint (password and client-credentials grants)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import JSONResponse

from services.aggregator import schemas
from services.aggregator.deps import StateDep
from services.aggregator.login import Issued, Refused, TokenRequest
from services.aggregator.security import TOKEN_PATH
from windpark.credentials import MAX_SECRET_CHARS

router = APIRouter(tags=["auth"])

# Names and ids are at most 64 characters (windpark.credentials.NAME_RE); a little room
# so that a too-long one is a failed login like any other, not a 422.
NAME_MAX = 256
NO_CACHE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


@router.post(
    TOKEN_PATH,
    summary="Get an access token",
    description="OAuth2 token endpoint, form-encoded. People: `grant_type=password` with "
    "`username` and `password`. Machines: `grant_type=client_credentials` with "
    "`client_id` and `client_secret` in the form or as HTTP Basic. `scope` (space-separated) "
    "narrows the token to some of the granted scopes. Tokens last 15 minutes by default. "
    "After 10 failed attempts within a minute for one user name (or client id), from any "
    "address, or 100 from one address over every name, the next answers 429 with "
    "Retry-After. A token is refused (401) within 2 s once its account is deleted, "
    "disabled, or given another password, secret or scopes.",
    response_model=schemas.TokenAnswer,
    responses={
        400: {"model": schemas.TokenError, "description": "invalid grant, request or scope"},
        401: {"model": schemas.TokenError, "description": "invalid client credentials"},
        413: {"model": schemas.ErrorAnswer, "description": "body larger than max_body_bytes"},
        429: {"model": schemas.ErrorAnswer, "description": "too many failed logins; Retry-After"},
    },
)
async def token(
    *,
    request: Request,
    state: StateDep,
    grant_type: Annotated[str, Form(max_length=64, description="password | client_credentials")],
    username: Annotated[str | None, Form(max_length=NAME_MAX)] = None,
    password: Annotated[str | None, Form(max_length=MAX_SECRET_CHARS)] = None,
    scope: Annotated[str, Form(max_length=1024, description="space-separated")] = "",
    client_id: Annotated[str | None, Form(max_length=NAME_MAX)] = None,
    client_secret: Annotated[str | None, Form(max_length=MAX_SECRET_CHARS)] = None,
) -> JSONResponse:
    client = request.scope.get("client")
    result = await state.auth.token(
        TokenRequest(
            grant_type=grant_type,
            username=username,
            password=password,
            scope=scope,
            client_id=client_id,
            client_secret=client_secret,
            authorization=request.headers.get("authorization"),
            # The socket peer (or what a trusted proxy said it was): see login_limits.
            address=client[0] if client else None,
        ),
        now=datetime.now(UTC),
    )
    if isinstance(result, Issued):
        body = schemas.TokenAnswer(
            access_token=result.access_token,
            expires_in=result.expires_in,
            scope=" ".join(s.value for s in result.scopes),
        )
        return JSONResponse(body.model_dump(), headers=NO_CACHE)
    if isinstance(result, Refused):
        error = schemas.TokenError(
            error=result.error, error_description=result.description, detail=result.description
        )
        headers = dict(NO_CACHE)
        authorization = request.headers.get("authorization", "")
        if result.error == "invalid_client" and authorization.lower().startswith("basic "):
            # RFC 6749 5.2: a client that tried Basic gets the Basic challenge back.
            headers["WWW-Authenticate"] = 'Basic realm="windpark"'
        return JSONResponse(error.model_dump(), status_code=result.status_code, headers=headers)
    return JSONResponse(
        {"detail": f"too many failed logins; try again in {result.retry_after_s} s"},
        status_code=429,
        headers={**NO_CACHE, "Retry-After": str(result.retry_after_s)},
    )
