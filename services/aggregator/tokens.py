"""Access tokens: short-lived JWTs signed with HS256, one pinned algorithm.

Why HS256: the API is the only party that issues tokens and the only one that checks
them, so a shared secret is enough, needs no key pair to manage and no extra library.
(A second verifier that must not be able to issue tokens would be the reason to move
to EdDSA.) The known JWT pitfalls are closed here: the algorithm list is fixed (a
header saying ``none``, ``HS512`` or ``RS256`` fails), keys are raw bytes chosen by
``kid`` from our own ring (never a key or JWK taken from the token), and ``exp``,
``iat``, ``sub``, ``aud`` and ``iss`` are required and checked.

Revocation: ``ver`` (required) is the account's token version when the token was
issued; ``services/aggregator/revocation.py`` compares it with the account's current one
on every request, so a deleted, disabled or changed account's tokens stop working.

Rotation: the ring signs with the current key and verifies with it and the previous
ones; each key's ``kid`` is derived from the key, so it changes with it.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

import jwt

from windpark.credentials import Scope, parse_scopes
from windpark.settings import ApiAuthSettings

log = logging.getLogger("windpark.aggregator.tokens")

ALGORITHM: Final = "HS256"
REQUIRED_CLAIMS: Final = ("exp", "iat", "sub", "aud", "iss", "ver")


class InvalidTokenError(Exception):
    """Any reason to refuse a token; the reason is for the log, never for the client."""


def key_id(key: bytes) -> str:
    # A one-way label of the key (not the key's hash itself), short enough for a header.
    return hmac.new(key, b"windpark jwt key id", hashlib.sha256).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a valid token speaks for."""

    subject: str  # "user:<name>" or "client:<id>"
    scopes: frozenset[Scope]
    # The account's token version when the token was issued (windpark.credentials).
    token_version: int
    # Set for a client bound to one turbine: it may send that turbine's readings only.
    turbine_id: str | None = None
    token_id: str | None = None

    def allows(self, scope: Scope) -> bool:
        return Scope.ADMIN in self.scopes or scope in self.scopes


class KeyRing:
    """The signing key and every key still accepted for verification, by ``kid``."""

    def __init__(self, current: bytes, previous: Iterable[bytes] = ()) -> None:
        self.current_kid = key_id(current)
        self._current = current
        self._keys: dict[str, bytes] = {key_id(k): k for k in previous}
        self._keys[self.current_kid] = current

    @classmethod
    def from_settings(cls, settings: ApiAuthSettings) -> KeyRing:
        """Raises windpark.settings.ApiKeyError for a missing, short or placeholder key."""
        return cls(settings.signing_key(), settings.previous_keys())

    def signing(self) -> tuple[str, bytes]:
        return self.current_kid, self._current

    def verification_key(self, kid: object) -> bytes | None:
        return self._keys.get(kid) if isinstance(kid, str) else None


@dataclass(frozen=True, slots=True)
class TokenPolicy:
    issuer: str
    audience: str
    ttl: timedelta
    leeway: timedelta

    @classmethod
    def from_settings(cls, settings: ApiAuthSettings) -> TokenPolicy:
        return cls(
            issuer=settings.issuer,
            audience=settings.audience,
            ttl=timedelta(seconds=settings.token_ttl_s),
            leeway=timedelta(seconds=settings.leeway_s),
        )


def issue(
    ring: KeyRing,
    policy: TokenPolicy,
    *,
    subject: str,
    scopes: Iterable[Scope],
    now: datetime,
    version: int,
    turbine_id: str | None = None,
) -> str:
    kid, key = ring.signing()
    claims: dict[str, Any] = {
        "iss": policy.issuer,
        "aud": policy.audience,
        "sub": subject,
        "iat": int(now.timestamp()),
        "exp": int((now + policy.ttl).timestamp()),
        "jti": secrets.token_urlsafe(12),
        "scope": " ".join(s.value for s in scopes),
        "ver": version,
    }
    if turbine_id is not None:
        claims["turbine_id"] = turbine_id
    return jwt.encode(claims, key, algorithm=ALGORITHM, headers={"kid": kid})


def verify(token: str, ring: KeyRing, policy: TokenPolicy) -> Principal:
    """The token's principal, or InvalidTokenError (wrong key, algorithm, audience, issuer;
    expired or issued in the future beyond the leeway; a claim missing or malformed)."""
    try:
        header = jwt.get_unverified_header(token)
        key = ring.verification_key(header.get("kid"))
        if key is None:
            raise InvalidTokenError(f"unknown key id {header.get('kid')!r}")
        claims = jwt.decode(
            token,
            key,
            algorithms=[ALGORITHM],
            audience=policy.audience,
            issuer=policy.issuer,
            leeway=policy.leeway,
            options={"require": list(REQUIRED_CLAIMS)},
        )
    except jwt.PyJWTError as exc:
        raise InvalidTokenError(str(exc)) from exc
    return _principal(claims)


def _principal(claims: Mapping[str, Any]) -> Principal:
    subject, scope, turbine_id = claims["sub"], claims.get("scope", ""), claims.get("turbine_id")
    if not isinstance(subject, str) or not isinstance(scope, str):
        raise InvalidTokenError("sub and scope must be strings")
    if turbine_id is not None and not isinstance(turbine_id, str):
        raise InvalidTokenError("turbine_id must be a string")
    try:
        scopes = frozenset(parse_scopes(scope.split()))
    except ValueError as exc:
        raise InvalidTokenError(str(exc)) from exc
    version = claims["ver"]
    if type(version) is not int or version < 1:
        raise InvalidTokenError("ver must be a positive integer")
    jti = claims.get("jti")
    return Principal(
        subject=subject,
        scopes=scopes,
        token_version=version,
        turbine_id=turbine_id,
        token_id=jti if isinstance(jti, str) else None,
    )
