"""API authentication against the real database: every route but health and token needs a
token with the right scope; forged, expired and misdirected tokens fail; logins are
limited per user and per address, whatever X-Forwarded-For says; hashes are Argon2id."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import re
import secrets
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import asyncpg
import httpx
import jwt
import pytest
import uvicorn
from fastapi.routing import APIRoute, iter_route_contexts

from services.aggregator import tokens
from services.aggregator.app import create_app
from services.aggregator.config import Settings
from services.aggregator.main import uvicorn_config
from services.aggregator.security import PUBLIC_PATHS, api_routes
from tests.conftest import (
    ApiClientCredentials,
    broker_settled,
    create_api_client,
    new_turbine_id,
    request_token,
    with_lifespan_state,
)
from tests.e2e.conftest import free_port
from tests.factories import make_payload
from tests.integration.test_cli import run_windpark
from windpark import contract, credentials
from windpark.bootstrap import SetupSettings
from windpark.credentials import Scope
from windpark.settings import ApiAuthSettings

JSON = {"content-type": "application/json"}
# Not API routes: the OpenAPI document, Swagger UI and its assets (routes/docs.py). Public
# by design, and listed here so that a new public path of any kind fails
# test_only_health_token_and_docs_are_public.
DOCS_PATHS = {"/openapi.json", "/docs", "/docs/assets"}


@contextlib.asynccontextmanager
async def serve(
    settings: Settings | None = None,
    *,
    address: str = "127.0.0.1",
    base_url: str = "http://testserver",
) -> AsyncIterator[httpx.AsyncClient]:
    """The app with its lifespan, reached from ``address``; no credentials."""
    app = create_app(settings or Settings())
    async with app.router.lifespan_context(app) as state:
        await broker_settled(state)
        transport = httpx.ASGITransport(
            app=with_lifespan_state(app, state), client=(address, 40000)
        )
        async with httpx.AsyncClient(transport=transport, base_url=base_url) as http:
            yield http


@pytest.fixture(scope="module")
async def anonymous(prepared: SetupSettings) -> AsyncIterator[httpx.AsyncClient]:
    # registry_refresh_s=0: a turbine registered by a test is seen at once.
    async with serve(Settings(registry_refresh_s=0)) as http:
        yield http


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def unique_address() -> str:
    """A client address of this test's own, so login limits never leak between tests."""
    return f"10.{secrets.randbelow(250)}.{secrets.randbelow(250)}.{secrets.randbelow(250) + 1}"


# Every route is protected unless it is on the allow-list ---------------------------------------


def _concrete(path: str) -> str:
    # Any value that passes the path parameter's own checks: a turbine id.
    return re.sub(r"\{[^}]+\}", "WTG01", path)


def test_only_health_token_and_docs_are_public(prepared: SetupSettings) -> None:
    assert {"/healthz", "/readyz", "/v1/token"} == PUBLIC_PATHS
    app = create_app(Settings())
    other_routes = {
        c.path
        for c in iter_route_contexts(app.routes)
        if not isinstance(c.original_route, APIRoute)
    }
    assert other_routes == DOCS_PATHS


async def test_every_protected_route_answers_401_without_a_token(
    anonymous: httpx.AsyncClient,
) -> None:
    app = create_app(Settings())
    checked = []
    for route, template, methods in api_routes(app):
        if route.path in PUBLIC_PATHS:
            continue
        for method in sorted(methods):
            path = _concrete(template)
            for headers in ({}, {"Authorization": "Bearer"}, {"Authorization": "Basic eDp5"}):
                answer = await anonymous.request(method, path, headers={**headers, **JSON})
                assert answer.status_code == 401, (method, path, headers, answer.text)
                assert answer.headers["www-authenticate"].startswith("Bearer")
                assert answer.json() == {
                    "detail": "authentication required: send a bearer token from POST /v1/token"
                }
            checked.append(f"{method} {template}")
    # The seed paths and /v1 at least; new routes are in app.routes by themselves.
    assert {"GET /datos-generadores/", "GET /agregados/", "POST /generador/"} <= set(checked)
    assert {"GET /metrics", "POST /v1/readings", "GET /v1/turbines"} <= set(checked)


async def test_public_routes_answer_without_a_token(anonymous: httpx.AsyncClient) -> None:
    assert (await anonymous.get("/healthz")).status_code == 200
    assert (await anonymous.get("/readyz")).status_code in (200, 503)
    assert (await anonymous.get("/openapi.json")).status_code == 200
    assert (await anonymous.get("/docs")).status_code == 200
    token = await anonymous.post("/v1/token", data={"grant_type": "password"})
    assert token.status_code == 400


# Forged, misdirected and stale tokens ----------------------------------------------------------


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


@pytest.fixture(scope="module")
async def real_admin(db_pool: asyncpg.Pool) -> dict[str, Any]:
    """``sub`` and ``ver`` of a real admin client: the forgeries below are refused for
    what is forged, not because nobody has that name (the control test uses the same)."""
    client = await create_api_client(db_pool, Scope.ADMIN)
    subject = credentials.subject_of("client", client.client_id)
    async with db_pool.acquire() as conn:
        version = await credentials.live_token_version(conn, subject)
    return {"sub": subject, "ver": version}


def _claims(account: dict[str, Any], **overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    api = Settings().api
    claims: dict[str, Any] = {
        "iss": api.issuer,
        "aud": api.audience,
        "iat": now,
        "exp": now + 600,
        "scope": "admin",
        **account,
    }
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


def _signed(claims: dict[str, Any], *, key: bytes | None = None, alg: str = "HS256") -> str:
    real = Settings().api.signing_key()
    return jwt.encode(claims, key or real, algorithm=alg, headers={"kid": tokens.key_id(real)})


FORGERIES = [
    "alg_none",
    "alg_none_with_signature",
    "wrong_key",
    "other_alg_same_key",
    "wrong_audience",
    "wrong_issuer",
    "expired_beyond_leeway",
    "issued_in_the_future",
    "no_exp",
    "no_iat",
    "no_sub",
    "no_aud",
    "no_iss",
    "no_ver",
    "other_ver",
    "unknown_account",
    "unknown_kid",
    "unknown_scope",
    "garbage",
]


def _forgeries(account: dict[str, Any]) -> dict[str, str]:
    """Made when a test runs (the key file exists once `prepared` has run setup)."""
    kid = tokens.key_id(Settings().api.signing_key())
    now = int(time.time())
    unsigned = f"{_b64({'alg': 'none', 'typ': 'JWT', 'kid': kid})}.{_b64(_claims(account))}."
    return {
        "alg_none": unsigned,
        "alg_none_with_signature": unsigned + "c2lnbmF0dXJl",
        "wrong_key": _signed(_claims(account), key=secrets.token_bytes(48)),
        "other_alg_same_key": _signed(_claims(account), alg="HS512"),
        "wrong_audience": _signed(_claims(account, aud="another-api")),
        "wrong_issuer": _signed(_claims(account, iss="someone-else")),
        "expired_beyond_leeway": _signed(_claims(account, iat=now - 900, exp=now - 60)),
        "issued_in_the_future": _signed(_claims(account, iat=now + 120, exp=now + 900)),
        "no_exp": _signed(_claims(account, exp=None)),
        "no_iat": _signed(_claims(account, iat=None)),
        "no_sub": _signed(_claims(account, sub=None)),
        "no_aud": _signed(_claims(account, aud=None)),
        "no_iss": _signed(_claims(account, iss=None)),
        "no_ver": _signed(_claims(account, ver=None)),
        "other_ver": _signed(_claims(account, ver=account["ver"] + 1)),
        "unknown_account": _signed(_claims(account, sub="client:nobody-has-this-name")),
        "unknown_kid": jwt.encode(
            _claims(account), Settings().api.signing_key(), algorithm="HS256", headers={"kid": "x"}
        ),
        "unknown_scope": _signed(_claims(account, scope="root")),
        "garbage": "not.a.token",
    }


@pytest.mark.parametrize("kind", FORGERIES)
async def test_bad_tokens_answer_401(
    anonymous: httpx.AsyncClient, real_admin: dict[str, Any], kind: str
) -> None:
    forgeries = _forgeries(real_admin)
    assert set(forgeries) == set(FORGERIES)
    token = forgeries[kind]
    answer = await anonymous.get("/v1/turbines", headers=bearer(token))
    assert answer.status_code == 401, answer.text
    assert answer.headers["www-authenticate"] == 'Bearer realm="windpark", error="invalid_token"'
    assert answer.json() == {"detail": "invalid or expired token"}


async def test_tokens_within_the_leeway_and_valid_ones_pass(
    anonymous: httpx.AsyncClient, real_admin: dict[str, Any]
) -> None:
    now = int(time.time())
    for claims in (
        _claims(real_admin),
        # expired 10 s ago: within the 30 s leeway
        _claims(real_admin, iat=now - 900, exp=now - 10),
        _claims(real_admin, iat=now + 10),  # the issuer's clock is 10 s ahead
    ):
        answer = await anonymous.get("/v1/turbines", headers=bearer(_signed(claims)))
        assert answer.status_code == 200, (claims, answer.text)


async def test_a_previous_key_verifies_until_it_is_dropped(
    prepared: SetupSettings, real_admin: dict[str, Any]
) -> None:
    old, new = secrets.token_urlsafe(48), secrets.token_urlsafe(48)
    ring_old = tokens.KeyRing(old.encode())
    policy = tokens.TokenPolicy.from_settings(Settings().api)
    token = tokens.issue(
        ring_old,
        policy,
        subject=real_admin["sub"],
        scopes=[Scope.TELEMETRY_READ],
        now=datetime.now(UTC),
        version=real_admin["ver"],
    )
    rotated = Settings(api=ApiAuthSettings(jwt_key=new, jwt_previous_keys=[old]))
    async with serve(rotated) as http:
        assert (await http.get("/v1/turbines", headers=bearer(token))).status_code == 200
    dropped = Settings(api=ApiAuthSettings(jwt_key=new))
    async with serve(dropped) as http:
        assert (await http.get("/v1/turbines", headers=bearer(token))).status_code == 401


# Scopes ---------------------------------------------------------------------------------------


async def test_scopes_decide_what_a_token_may_do(
    anonymous: httpx.AsyncClient, api_token: Callable[..., Awaitable[str]]
) -> None:
    reader = await api_token(Scope.TELEMETRY_READ)
    writer = await api_token(Scope.READINGS_WRITE)
    alerts = await api_token(Scope.ALERTS_MANAGE)
    admin = await api_token(Scope.ADMIN)

    for token in (reader, admin):
        assert (await anonymous.get("/v1/turbines", headers=bearer(token))).status_code == 200
    for token in (writer, alerts):
        answer = await anonymous.get("/datos-generadores/", headers=bearer(token))
        assert answer.status_code == 403
        assert answer.json() == {"detail": "this token lacks the scope 'telemetry:read'"}
        assert 'error="insufficient_scope"' in answer.headers["www-authenticate"]
        assert (await anonymous.get("/metrics", headers=bearer(token))).status_code == 403

    bad_reading = make_payload(turbine_id=new_turbine_id(), seq=-1)
    for path in ("/generador/", "/v1/readings"):
        refused = await anonymous.post(
            path, content=bad_reading, headers={**JSON, **bearer(reader)}
        )
        assert refused.status_code == 403
        assert refused.json() == {"detail": "this token lacks the scope 'readings:write'"}
        # Past the gate, the reading is judged (and rejected): the scope was the only issue.
        for token in (writer, admin):
            judged = await anonymous.post(
                path, content=bad_reading, headers={**JSON, **bearer(token)}
            )
            assert judged.status_code == 422, judged.text


async def test_a_turbine_bound_token_cannot_write_for_another_turbine(
    anonymous: httpx.AsyncClient, db_pool: asyncpg.Pool, turbine_id: str
) -> None:
    other = new_turbine_id()
    client = await create_api_client(db_pool, Scope.READINGS_WRITE, turbine_id=turbine_id)
    token = await request_token(anonymous, client)
    assert jwt.decode(token, options={"verify_signature": False})["turbine_id"] == turbine_id

    now = contract.format_ts(datetime.now(UTC))
    for path in ("/generador/", "/v1/readings"):
        forged = make_payload(turbine_id=other, ts=now)
        answer = await anonymous.post(path, content=forged, headers={**JSON, **bearer(token)})
        assert answer.status_code == 403, answer.text
        assert turbine_id in answer.json()["detail"]
        # Its own turbine passes the gate: this one is judged, and rejected for its seq.
        own = make_payload(turbine_id=turbine_id, ts=now, seq=-1)
        judged = await anonymous.post(path, content=own, headers={**JSON, **bearer(token)})
        assert judged.status_code == 422, judged.text
        assert [r["code"] for r in judged.json()["detail"]["reasons"]] == ["invalid_seq"]
    async with db_pool.acquire() as conn:
        kept = await conn.fetch(
            "SELECT turbine_id, reasons, payload FROM rejected_readings"
            " WHERE source = 'http' AND 'turbine_mismatch' = ANY (reasons) AND payload = $1",
            make_payload(turbine_id=other, ts=now),
        )
    # Kept as rejects under the turbine the token speaks for: nothing is lost, and the
    # attempt is on record.
    assert len(kept) == 2
    assert {r["turbine_id"] for r in kept} == {turbine_id}


# The token endpoint ---------------------------------------------------------------------------


async def _add_user(pool: asyncpg.Pool, *scopes: Scope, disabled: bool = False) -> tuple[str, str]:
    name, password = f"u-{uuid.uuid4().hex[:10]}", credentials.new_secret()
    hashed = await asyncio.to_thread(credentials.hash_secret, password)
    async with pool.acquire() as conn:
        await credentials.add_user(conn, name, hashed, scopes)
        if disabled:
            await credentials.set_user_disabled(conn, name, True)
    return name, password


async def test_password_grant_issues_a_short_lived_token_with_the_granted_scopes(
    db_pool: asyncpg.Pool,
) -> None:
    name, password = await _add_user(db_pool, Scope.TELEMETRY_READ, Scope.ALERTS_MANAGE)
    async with serve(address=unique_address()) as http:
        answer = await http.post(
            "/v1/token", data={"grant_type": "password", "username": name, "password": password}
        )
        assert answer.status_code == 200, answer.text
        assert answer.headers["cache-control"] == "no-store"
        body = answer.json()
        assert body["token_type"] == "bearer"
        assert body["expires_in"] == 900
        assert body["scope"] == "telemetry:read alerts:manage"
        header = jwt.get_unverified_header(body["access_token"])
        assert header["alg"] == "HS256"
        assert header["kid"] == tokens.key_id(Settings().api.signing_key())
        claims = jwt.decode(body["access_token"], options={"verify_signature": False})
        assert claims["sub"] == f"user:{name}"
        assert claims["exp"] - claims["iat"] == 900
        assert {"aud", "iss", "jti"} <= set(claims)
        assert "turbine_id" not in claims
        read = await http.get("/v1/turbines", headers=bearer(body["access_token"]))
        assert read.status_code == 200

        narrowed = await http.post(
            "/v1/token",
            data={
                "grant_type": "password",
                "username": name,
                "password": password,
                "scope": "telemetry:read",
            },
        )
        assert narrowed.json()["scope"] == "telemetry:read"
        wider = await http.post(
            "/v1/token",
            data={
                "grant_type": "password",
                "username": name,
                "password": password,
                "scope": "admin",
            },
        )
        assert wider.status_code == 400
        assert wider.json()["error"] == "invalid_scope"


async def test_wrong_or_disabled_credentials_get_no_token(db_pool: asyncpg.Pool) -> None:
    name, password = await _add_user(db_pool, Scope.TELEMETRY_READ)
    disabled, disabled_password = await _add_user(db_pool, Scope.TELEMETRY_READ, disabled=True)
    client = await create_api_client(db_pool, Scope.TELEMETRY_READ)
    async with serve(address=unique_address()) as http:
        for data in (
            {"grant_type": "password", "username": name, "password": password + "x"},
            {"grant_type": "password", "username": "nobody-" + name, "password": password},
            {"grant_type": "password", "username": disabled, "password": disabled_password},
        ):
            answer = await http.post("/v1/token", data=data)
            assert answer.status_code == 400, answer.text
            assert answer.json()["error"] == "invalid_grant"
            assert "access_token" not in answer.text
        wrong_secret = await http.post(
            "/v1/token",
            data={
                "grant_type": "client_credentials",
                "client_id": client.client_id,
                "client_secret": "x" + client.client_secret,
            },
        )
        assert wrong_secret.status_code == 401
        assert wrong_secret.json()["error"] == "invalid_client"
        unsupported = await http.post("/v1/token", data={"grant_type": "implicit"})
        assert unsupported.status_code == 400
        assert unsupported.json()["error"] == "unsupported_grant_type"


async def test_client_credentials_in_the_form_or_as_http_basic(db_pool: asyncpg.Pool) -> None:
    client = await create_api_client(db_pool, Scope.TELEMETRY_READ, Scope.READINGS_WRITE)
    async with serve(address=unique_address()) as http:
        in_form = await request_token(http, client)
        basic = await http.post(
            "/v1/token",
            data={"grant_type": "client_credentials"},
            auth=(client.client_id, client.client_secret),
        )
        assert basic.status_code == 200, basic.text
        for token in (in_form, basic.json()["access_token"]):
            claims = jwt.decode(token, options={"verify_signature": False})
            assert claims["sub"] == f"client:{client.client_id}"
            assert claims["scope"] == "telemetry:read readings:write"
        both = await http.post(
            "/v1/token",
            data={"grant_type": "client_credentials", "client_id": client.client_id},
            auth=(client.client_id, client.client_secret),
        )
        assert both.status_code == 400
        wrong_basic = await http.post(
            "/v1/token", data={"grant_type": "client_credentials"}, auth=(client.client_id, "no")
        )
        assert wrong_basic.status_code == 401
        assert wrong_basic.headers["www-authenticate"] == 'Basic realm="windpark"'


async def test_token_bodies_over_the_limit_answer_413(anonymous: httpx.AsyncClient) -> None:
    big = b"grant_type=password&username=x&password=" + b"a" * (64 * 1024)
    form = {"content-type": "application/x-www-form-urlencoded"}
    answer = await anonymous.post("/v1/token", content=big, headers=form)
    assert answer.status_code == 413
    assert answer.json() == {"detail": "request body larger than 65536 bytes"}

    sent = 0

    async def chunked() -> AsyncIterator[bytes]:
        nonlocal sent
        yield b"grant_type=password&username=x&password="
        for _ in range(1000):  # 8 MB if nobody stops reading
            sent += 8192
            yield b"a" * 8192

    answer = await anonymous.post("/v1/token", content=chunked(), headers=form)
    assert answer.request.headers["transfer-encoding"] == "chunked"
    assert answer.status_code == 413
    assert answer.json() == {"detail": "request body larger than 65536 bytes"}
    assert sent <= 64 * 1024 + 2 * 8192


# Login limits ---------------------------------------------------------------------------------


async def _fail_login(http: httpx.AsyncClient, username: str, **headers: str) -> httpx.Response:
    return await http.post(
        "/v1/token",
        data={"grant_type": "password", "username": username, "password": "wrong"},
        headers=headers,
    )


@contextlib.asynccontextmanager
async def one_app(settings: Settings | None = None) -> AsyncIterator[Any]:
    """One app (one set of login counters), reached from any address: ``client(address)``."""
    app = create_app(settings or Settings())
    async with app.router.lifespan_context(app) as state:
        await broker_settled(state)
        wrapped = with_lifespan_state(app, state)

        def client(address: str) -> httpx.AsyncClient:
            transport = httpx.ASGITransport(app=wrapped, client=(address, 40000))
            return httpx.AsyncClient(transport=transport, base_url="http://testserver")

        yield client


async def test_the_11th_failed_login_of_a_user_from_one_address_answers_429(
    db_pool: asyncpg.Pool,
) -> None:
    name, password = await _add_user(db_pool, Scope.TELEMETRY_READ)
    async with one_app() as client:
        async with client(unique_address()) as guesser:
            for _ in range(10):
                assert (await _fail_login(guesser, name)).status_code == 400
            # The right password, too late from there: refused before it is even checked.
            answer = await _login(guesser, name, password)
            assert answer.status_code == 429, answer.text
            assert 1 <= int(answer.headers["retry-after"]) <= 60
            assert "too many failed logins" in answer.json()["detail"]
            # Another user from the same address is not affected.
            other, other_password = await _add_user(db_pool, Scope.TELEMETRY_READ)
            assert (await _login(guesser, other, other_password)).status_code == 200
        # Nor is the user elsewhere: guessing a name from one place does not lock it out.
        async with client(unique_address()) as elsewhere:
            answer = await _login(elsewhere, name, password)
            assert answer.status_code == 200, answer.text


def account_limit(failures: int) -> Settings:
    """The app's settings with a per-account limit (over all addresses) of ``failures``
    (100 by default): a test reaches it without a hundred Argon2 checks."""
    api = Settings().api.model_copy(update={"login_max_failures_per_account": failures})
    return Settings(api=api)


async def test_a_guess_spread_over_addresses_meets_the_per_account_limit(
    db_pool: asyncpg.Pool,
) -> None:
    name, password = await _add_user(db_pool, Scope.TELEMETRY_READ)
    async with one_app(account_limit(15)) as client:
        # Five addresses, three guesses each: none near the pair limit (10).
        for _ in range(5):
            async with client(unique_address()) as http:
                for _ in range(3):
                    assert (await _fail_login(http, name)).status_code == 400
        # From an address that never failed, the right password answers 429: only the
        # per-account bound refuses it.
        async with client(unique_address()) as fresh:
            assert (await _login(fresh, name, password)).status_code == 429
            other, other_password = await _add_user(db_pool, Scope.TELEMETRY_READ)
            assert (await _login(fresh, other, other_password)).status_code == 200


@pytest.mark.parametrize("spread", ["one address", "thirty addresses"])
async def test_a_burst_of_parallel_guesses_gets_no_more_than_the_limit(
    db_pool: asyncpg.Pool, spread: str
) -> None:
    name, _ = await _add_user(db_pool, Scope.TELEMETRY_READ)
    # From one address the pair limit (10) holds; from thirty, the per-account one.
    async with one_app(account_limit(10)) as client:
        if spread == "one address":
            addresses = [unique_address()] * 30
        else:
            addresses = [unique_address() for _ in range(30)]
        https = [client(address) for address in addresses]
        try:
            answers = await asyncio.gather(*(_fail_login(http, name) for http in https))
        finally:
            await asyncio.gather(*(http.aclose() for http in https))
    statuses = sorted(a.status_code for a in answers)
    # All thirty arrive before the first hash is checked; ten are checked, twenty wait.
    assert statuses == [400] * 10 + [429] * 20


async def test_the_11th_failed_client_login_from_one_address_answers_429(
    db_pool: asyncpg.Pool,
) -> None:
    client_creds = await create_api_client(db_pool, Scope.TELEMETRY_READ)
    wrong = ApiClientCredentials(client_creds.client_id, "not-the-secret")

    async def grant(http: httpx.AsyncClient, creds: ApiClientCredentials) -> int:
        answer = await http.post(
            "/v1/token",
            data={"grant_type": "client_credentials"},
            auth=(creds.client_id, creds.client_secret),
        )
        return answer.status_code

    async with one_app() as client:
        async with client(unique_address()) as guesser:
            for _ in range(10):
                assert await grant(guesser, wrong) == 401
            assert await grant(guesser, client_creds) == 429
        async with client(unique_address()) as elsewhere:
            assert await grant(elsewhere, client_creds) == 200


def address_limit(failures: int) -> Settings:
    """The app's settings with a per-address limit of ``failures`` (100 by default): a
    test reaches it without a hundred Argon2 checks."""
    api = Settings().api.model_copy(update={"login_max_failures_per_address": failures})
    return Settings(api=api)


async def _login(http: httpx.AsyncClient, username: str, password: str) -> httpx.Response:
    return await http.post(
        "/v1/token", data={"grant_type": "password", "username": username, "password": password}
    )


async def test_guessing_one_name_does_not_lock_the_other_users_out_of_that_address(
    db_pool: asyncpg.Pool,
) -> None:
    victim, _ = await _add_user(db_pool, Scope.TELEMETRY_READ)
    admin, admin_password = await _add_user(db_pool, Scope.ADMIN)
    async with one_app() as client, client(unique_address()) as shared:
        # Guesses at one name from an address that the admin shares (a NAT, an office).
        for _ in range(10):
            assert (await _fail_login(shared, victim)).status_code == 400
        assert (await _fail_login(shared, victim)).status_code == 429
        # The name is throttled; the address is not: the admin's password still works there.
        answer = await _login(shared, admin, admin_password)
        assert answer.status_code == 200, answer.text
        # Hammering the throttled name adds nothing to the address's count.
        for _ in range(100):
            assert (await _fail_login(shared, victim)).status_code == 429
        assert (await _login(shared, admin, admin_password)).status_code == 200


async def test_the_address_limit_stops_spraying_whatever_x_forwarded_for(
    db_pool: asyncpg.Pool,
) -> None:
    admin, admin_password = await _add_user(db_pool, Scope.ADMIN)
    async with one_app(address_limit(15)) as client, client(unique_address()) as http:
        # A new user name each time: only the per-address count can stop the sixteenth.
        for i in range(15):
            answer = await _fail_login(
                http, f"spray-{uuid.uuid4().hex[:8]}", **{"X-Forwarded-For": f"203.0.113.{i}"}
            )
            assert answer.status_code == 400
        answer = await _fail_login(
            http, f"spray-{uuid.uuid4().hex[:8]}", **{"X-Forwarded-For": "203.0.113.99"}
        )
        assert answer.status_code == 429
        assert int(answer.headers["retry-after"]) >= 1
        # Past the address limit, nobody logs in from that address for the window ...
        assert (await _login(http, admin, admin_password)).status_code == 429
        # ... while from another address the admin does.
        async with client(unique_address()) as elsewhere:
            assert (await _login(elsewhere, admin, admin_password)).status_code == 200


@contextlib.asynccontextmanager
async def real_server(settings: Settings) -> AsyncIterator[str]:
    """The API under uvicorn, configured as `windpark api` configures it, on a free port."""
    port = free_port()
    server = uvicorn.Server(uvicorn_config(settings, host="127.0.0.1", port=port))
    task = asyncio.create_task(server.serve())
    try:
        deadline = time.monotonic() + 15
        base = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient(base_url=base) as http:
            # Ready: started, and the broker link connected (see broker_settled).
            while not server.started or (await http.get("/readyz")).status_code != 200:
                assert not task.done(), "uvicorn stopped during start-up"
                assert time.monotonic() < deadline, "uvicorn did not get ready"
                await asyncio.sleep(0.05)
        yield base
    finally:
        server.should_exit = True
        await task


async def _spray(base: str) -> list[int]:
    """Eleven failed logins from 127.0.0.1, each under another user name and another
    X-Forwarded-For address: the statuses."""
    statuses = []
    async with httpx.AsyncClient(base_url=base) as http:
        for i in range(11):
            answer = await _fail_login(
                http, f"spray-{uuid.uuid4().hex[:8]}", **{"X-Forwarded-For": f"198.51.100.{i}"}
            )
            statuses.append(answer.status_code)
    return statuses


async def test_under_uvicorn_x_forwarded_for_from_an_untrusted_peer_changes_nothing(
    prepared: SetupSettings,
) -> None:
    # uvicorn's own default would trust 127.0.0.1 (this test's peer); windpark's does not.
    async with real_server(address_limit(10)) as base:
        assert await _spray(base) == [400] * 10 + [429]
    # The control: a peer that is a trusted proxy does choose the address, so each
    # attempt counts for another one. This is what an untrusted peer must not get.
    trusting = address_limit(10).model_copy(update={"forwarded_allow_ips": ["127.0.0.1"]})
    async with real_server(trusting) as base:
        assert await _spray(base) == [400] * 11


# Stored secrets, the CLI, the analyst ---------------------------------------------------------


def windpark_cli(*args: str, stdin: str | None = None) -> str:
    done = run_windpark(*args, stdin=stdin)
    assert done.returncode == 0, done.stderr
    return done.stdout


async def test_the_cli_stores_argon2id_hashes_and_shows_secrets_once(
    db_pool: asyncpg.Pool, turbine_id: str
) -> None:
    user, client_id = f"cli-{uuid.uuid4().hex[:8]}", f"gw-{uuid.uuid4().hex[:8]}"
    out = await asyncio.to_thread(windpark_cli, "users", "add", user, "--scope", "telemetry:read")
    password = re.search(r"password \(shown this once\): (\S+)", out)
    assert password is not None
    out = await asyncio.to_thread(
        windpark_cli,
        "clients",
        "add",
        client_id,
        "--scope",
        "readings:write,telemetry:read",
        "--turbine",
        turbine_id,
    )
    secret = re.search(r"client_secret \(shown this once\): (\S+)", out)
    assert secret is not None
    chosen = f"chosen-{uuid.uuid4().hex}"
    await asyncio.to_thread(
        windpark_cli,
        "users",
        "add",
        user + "-2",
        "--scope",
        "admin",
        "--password-stdin",
        stdin=chosen + "\n",
    )

    async with db_pool.acquire() as conn:
        hashes = await conn.fetch(
            "SELECT password_hash AS h FROM api_users WHERE username LIKE $1"
            " UNION ALL SELECT secret_hash FROM api_clients WHERE client_id = $2",
            user + "%",
            client_id,
        )
        assert len(hashes) == 3
        for row in hashes:
            assert row["h"].startswith("$argon2id$v=19$m=19456,t=2,p=1$")
            assert password.group(1) not in row["h"]
        # The database itself refuses anything but an Argon2id hash.
        with pytest.raises(asyncpg.CheckViolationError):
            await conn.execute(
                "INSERT INTO api_users (username, password_hash) VALUES ($1, 'plain')",
                f"plain-{uuid.uuid4().hex[:8]}",
            )

    listed = await asyncio.to_thread(windpark_cli, "clients", "list")
    assert f"turbine={turbine_id}" in listed
    assert secret.group(1) not in listed
    async with serve(address=unique_address()) as http:
        for data in (
            {"grant_type": "password", "username": user, "password": password.group(1)},
            {"grant_type": "password", "username": user + "-2", "password": chosen},
            {
                "grant_type": "client_credentials",
                "client_id": client_id,
                "client_secret": secret.group(1),
            },
        ):
            assert (await http.post("/v1/token", data=data)).status_code == 200
        await asyncio.to_thread(windpark_cli, "users", "disable", user)
        disabled = await http.post(
            "/v1/token",
            data={"grant_type": "password", "username": user, "password": password.group(1)},
        )
        assert disabled.status_code == 400
        await asyncio.to_thread(windpark_cli, "clients", "delete", client_id)
        gone = await http.post(
            "/v1/token",
            data={
                "grant_type": "client_credentials",
                "client_id": client_id,
                "client_secret": secret.group(1),
            },
        )
        assert gone.status_code == 401


async def test_the_analyst_role_cannot_read_credentials(setup_settings: SetupSettings) -> None:
    conn = await asyncpg.connect(setup_settings.admin_dsn, database=setup_settings.db.name)
    try:
        if not await conn.fetchval("SELECT 1 FROM pg_roles WHERE rolname = 'windpark_analyst'"):
            pytest.skip("no windpark_analyst role on this server")
        for table in ("api_users", "api_clients"):
            for role in ("windpark_analyst", "public"):
                assert not await conn.fetchval(
                    "SELECT has_table_privilege($1, $2, 'SELECT')", role, table
                ), (role, table)
        # A control: the analyst does read what 0003 grants.
        assert await conn.fetchval(
            "SELECT has_table_privilege('windpark_analyst', 'turbines', 'SELECT')"
        )
    finally:
        await conn.close()


# Headers and documentation --------------------------------------------------------------------


async def test_hsts_only_over_tls(api_token: Callable[..., Awaitable[str]]) -> None:
    token = await api_token(Scope.TELEMETRY_READ)
    async with serve(base_url="https://testserver") as https:
        answer = await https.get("/v1/turbines", headers=bearer(token))
        assert answer.headers["strict-transport-security"] == "max-age=31536000"
        assert (await https.get("/healthz")).headers["strict-transport-security"]
    async with serve() as http:
        answer = await http.get("/v1/turbines", headers=bearer(token))
        assert "strict-transport-security" not in answer.headers
        assert answer.headers["cache-control"] == "no-store"


async def test_openapi_shows_the_oauth2_flows_and_each_operations_scope(
    anonymous: httpx.AsyncClient,
) -> None:
    doc = (await anonymous.get("/openapi.json")).json()
    scheme = doc["components"]["securitySchemes"]["OAuth2"]
    assert scheme["type"] == "oauth2"
    assert scheme["flows"]["password"]["tokenUrl"] == "/v1/token"
    assert scheme["flows"]["clientCredentials"]["tokenUrl"] == "/v1/token"
    assert set(scheme["flows"]["password"]["scopes"]) == {s.value for s in Scope}
    for path, operations in doc["paths"].items():
        for method, operation in operations.items():
            if path in PUBLIC_PATHS:
                assert "security" not in operation, (method, path)
                continue
            expected = "readings:write" if method == "post" else "telemetry:read"
            assert operation["security"] == [{"OAuth2": [expected]}, {"BearerJWT": []}], (
                method,
                path,
            )
            assert {"401", "403"} <= set(operation["responses"])
    token_form = doc["paths"]["/v1/token"]["post"]["requestBody"]["content"]
    assert "application/x-www-form-urlencoded" in token_form
