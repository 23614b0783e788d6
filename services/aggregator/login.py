"""The token endpoint's work: check a password or a client secret, then issue a token.

OAuth2 (RFC 6749): ``grant_type=password`` for people, ``client_credentials`` for
machines. Errors follow its section 5.2 (``invalid_grant`` and ``invalid_request`` are
400, ``invalid_client`` is 401); every failed check counts against the user name (or
client id) from that address, the name from all addresses, and the address
(``login_limits``), and the next attempt past a limit is refused before any hash is
computed.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Final, Literal
from urllib.parse import unquote_plus

import asyncpg

from services.aggregator import login_limits
from services.aggregator.login_limits import LoginLimits
from services.aggregator.revocation import TokenVersions
from services.aggregator.tokens import KeyRing, TokenPolicy, issue
from windpark import credentials
from windpark.credentials import Account, Scope

log = logging.getLogger("windpark.aggregator.login")

GRANT_TYPES: Final = ("password", "client_credentials")
ErrorCode = Literal[
    "invalid_request", "invalid_grant", "invalid_client", "invalid_scope", "unsupported_grant_type"
]


@dataclass(frozen=True, slots=True)
class Issued:
    access_token: str
    expires_in: int
    scopes: tuple[Scope, ...]


@dataclass(frozen=True, slots=True)
class Refused:
    error: ErrorCode
    description: str

    @property
    def status_code(self) -> int:
        return 401 if self.error == "invalid_client" else 400


@dataclass(frozen=True, slots=True)
class Throttled:
    retry_after_s: int


@dataclass(frozen=True, slots=True)
class TokenRequest:
    grant_type: str
    username: str | None
    password: str | None
    scope: str
    client_id: str | None
    client_secret: str | None
    # The Authorization header, for HTTP Basic client authentication.
    authorization: str | None
    address: str | None


@dataclass(slots=True)
class LoginService:
    """What the token endpoint needs, made once per app in its lifespan."""

    pool: asyncpg.Pool
    ring: KeyRing
    policy: TokenPolicy
    limits: LoginLimits
    # Which tokens are still current (revocation); read on every request by `authorize`.
    versions: TokenVersions
    # Bounds the Argon2 checks running at once (each takes 19 MiB and a core for ~30 ms).
    hashing: asyncio.Semaphore

    async def token(self, request: TokenRequest, *, now: datetime) -> Issued | Refused | Throttled:
        if request.grant_type == "password":
            return await self._password_grant(request, now)
        if request.grant_type == "client_credentials":
            return await self._client_grant(request, now)
        return Refused(
            "unsupported_grant_type", f"grant_type must be one of: {', '.join(GRANT_TYPES)}"
        )

    async def _password_grant(
        self, request: TokenRequest, now: datetime
    ) -> Issued | Refused | Throttled:
        if not request.username or request.password is None:
            return Refused("invalid_request", "the password grant needs username and password")
        keys = (login_limits.user_key(request.username), login_limits.address_key(request.address))
        if (wait := self._count_attempt(keys)) is not None:
            return Throttled(wait)
        async with self.pool.acquire() as conn:
            account = await credentials.get_user(conn, request.username)
        verified = await self._check(account, request.password, table="user")
        if not verified or account is None:
            return Refused("invalid_grant", "wrong user name or password, or the user is disabled")
        self._succeeded(keys)
        return self._issue(
            account, credentials.subject_of("user", account.name), request.scope, now
        )

    async def _client_grant(
        self, request: TokenRequest, now: datetime
    ) -> Issued | Refused | Throttled:
        client = _client_credentials(request)
        if isinstance(client, Refused):
            return client
        client_id, secret = client
        keys = (login_limits.client_key(client_id), login_limits.address_key(request.address))
        if (wait := self._count_attempt(keys)) is not None:
            return Throttled(wait)
        async with self.pool.acquire() as conn:
            account = await credentials.get_client(conn, client_id)
        verified = await self._check(account, secret, table="client")
        if not verified or account is None:
            return Refused("invalid_client", "wrong client id or secret, or the client is disabled")
        self._succeeded(keys)
        return self._issue(
            account, credentials.subject_of("client", account.name), request.scope, now
        )

    def _count_attempt(self, keys: tuple[str, str]) -> int | None:
        """Seconds to wait, or None after counting this attempt as a failure in advance:
        parallel guesses all count before any hash is checked, so a burst cannot slip
        more than the limit through while the first ones are being verified."""
        wait = self.limits.retry_after_s(*keys)
        if wait is None:
            self.limits.record_failure(*keys)
        return wait

    def _succeeded(self, keys: tuple[str, str]) -> None:
        self.limits.succeeded(*keys)

    async def _check(self, account: Account | None, secret: str, *, table: str) -> bool:
        # An unknown name costs the same hash check as a wrong password.
        stored = None if account is None else account.secret_hash
        async with self.hashing:
            ok, new_hash = await asyncio.to_thread(credentials.verify, secret, stored)
        if account is None or not ok or account.disabled:
            log.info("failed login for %s %r", table, account.name if account else "(unknown)")
            return False
        if new_hash is not None:
            # Stored with older parameters: keep the stronger hash from now on (the same
            # secret, so the account's tokens stay valid). Only over the hash verified
            # here: a password changed meanwhile is left as it is.
            rehash = (
                credentials.rehash_user_password
                if table == "user"
                else credentials.rehash_client_secret
            )
            async with self.pool.acquire() as conn:
                await rehash(conn, account.name, account.secret_hash, new_hash)
        return True

    def _issue(
        self, account: Account, subject: str, requested: str, now: datetime
    ) -> Issued | Refused:
        granted = account.scopes
        if requested.strip():
            try:
                asked = credentials.parse_scopes(requested.split())
            except credentials.CredentialsError as exc:
                return Refused("invalid_scope", str(exc))
            if not all(s in granted or Scope.ADMIN in granted for s in asked):
                return Refused("invalid_scope", "a requested scope is not granted to you")
            granted = asked
        token = issue(
            self.ring,
            self.policy,
            subject=subject,
            scopes=granted,
            now=now,
            version=account.token_version,
            turbine_id=account.turbine_id,
        )
        return Issued(token, int(self.policy.ttl.total_seconds()), granted)


def _client_credentials(request: TokenRequest) -> tuple[str, str] | Refused:
    """(client_id, secret) from HTTP Basic or from the form, not both (RFC 6749 2.3.1)."""
    basic = _basic_credentials(request.authorization)
    if isinstance(basic, Refused):
        return basic
    in_form = request.client_id is not None or request.client_secret is not None
    if basic is not None and in_form:
        return Refused("invalid_request", "send the client credentials once: Basic or form")
    if basic is not None:
        return basic
    if not request.client_id or not request.client_secret:
        return Refused("invalid_client", "client_id and client_secret are required")
    return request.client_id, request.client_secret


def _basic_credentials(header: str | None) -> tuple[str, str] | Refused | None:
    if header is None:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return Refused("invalid_client", "malformed Basic credentials")
    client_id, sep, secret = decoded.partition(":")
    if not sep or not client_id or not secret:
        return Refused("invalid_client", "malformed Basic credentials")
    # RFC 6749 2.3.1: both are form-encoded before Base64.
    return unquote_plus(client_id), unquote_plus(secret)
