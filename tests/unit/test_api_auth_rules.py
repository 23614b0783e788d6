"""The API's auth rules that need no server: key checks, settings refusals, the login
limiter's window, token verification and scope implication."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jwt
import pytest
from pydantic import ValidationError

from services.aggregator import tokens
from services.aggregator.config import Settings
from services.aggregator.login_limits import FailureLimiter, LoginLimits
from windpark import credentials
from windpark.credentials import CredentialsError, Scope
from windpark.settings import ApiAuthSettings, ApiKeyError, check_jwt_key

GOOD_KEY = secrets.token_urlsafe(48)


@pytest.mark.parametrize(
    "key",
    [
        "",
        "secret",
        "x" * 31,  # one byte short
        "changethis-changethis-changethis-changethis",
        "a" * 64,  # long, but no secret
        "an-example-key-of-good-length-0123456789abcdef",
    ],
)
def test_short_and_placeholder_keys_are_refused(key: str) -> None:
    with pytest.raises(ApiKeyError):
        check_jwt_key(key.encode(), source="test")
    with pytest.raises(ValidationError, match="JWT key"):
        ApiAuthSettings(jwt_key=key)
    with pytest.raises(ValidationError, match="JWT key"):
        ApiAuthSettings(jwt_previous_keys=[GOOD_KEY, key])


def test_a_random_key_is_accepted_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WINDPARK_API__JWT_KEY", GOOD_KEY)
    assert Settings().api.signing_key() == GOOD_KEY.encode()
    monkeypatch.setenv("WINDPARK_API__JWT_KEY", "changeme")
    with pytest.raises(ValidationError):
        Settings()


def test_a_missing_or_weak_key_file_stops_the_start_up(tmp_path: Path) -> None:
    missing = ApiAuthSettings(jwt_key_file=tmp_path / "nope")
    with pytest.raises(ApiKeyError, match="nope"):
        tokens.KeyRing.from_settings(missing)
    weak = tmp_path / "weak"
    weak.write_text("short\n")
    with pytest.raises(ApiKeyError, match="bytes"):
        tokens.KeyRing.from_settings(ApiAuthSettings(jwt_key_file=weak))
    good = tmp_path / "good"
    good.write_text(GOOD_KEY + "\n")
    assert tokens.KeyRing.from_settings(ApiAuthSettings(jwt_key_file=good)).signing()[1] == (
        GOOD_KEY.encode()
    )


def test_cors_refuses_a_wildcard_with_credentials() -> None:
    with pytest.raises(ValidationError, match=r"'\*'"):
        Settings(cors_origins=["*"], cors_allow_credentials=True)
    assert Settings(cors_origins=["*"]).cors_origins == ["*"]
    assert Settings(cors_origins=["https://ops.example"], cors_allow_credentials=True)


def test_limiter_blocks_the_attempt_after_max_failures_until_the_window_passes() -> None:
    now = [1000.0]
    limiter = FailureLimiter(max_failures=10, window_s=60, clock=lambda: now[0])
    keys = ("user:alice", "addr:10.0.0.1")
    for _ in range(10):
        assert limiter.retry_after_s(keys) is None
        limiter.record_failure(keys)
        now[0] += 1
    # 10 failures at t=1000..1009, now t=1010: the oldest leaves the window at 1060.
    assert limiter.retry_after_s(keys) == 50
    assert limiter.retry_after_s(["user:bob"]) is None
    assert limiter.retry_after_s(["addr:10.0.0.1"]) == 50
    now[0] = 1060.5
    assert limiter.retry_after_s(keys) is None
    limiter.forget("user:alice")
    assert limiter.retry_after_s(["user:alice"]) is None
    # An attempt counted in advance and then taken back leaves the count as it was.
    for _ in range(10):
        limiter.record_failure(["addr:10.0.0.2"])
    limiter.withdraw("addr:10.0.0.2")
    assert limiter.retry_after_s(["addr:10.0.0.2"]) is None


def _limits(
    now: list[float], *, pairs: int = 10, accounts: int = 100, addresses: int = 100
) -> LoginLimits:
    def limiter(max_failures: int) -> FailureLimiter:
        return FailureLimiter(max_failures=max_failures, window_s=60, clock=lambda: now[0])

    return LoginLimits(
        pairs=limiter(pairs), accounts=limiter(accounts), addresses=limiter(addresses)
    )


def test_an_address_guessing_one_name_is_stopped_by_the_pairs_limit_alone() -> None:
    limits = _limits([0.0])
    attempts = 0
    while limits.retry_after_s("user:admin", "addr:10.0.0.1") is None:
        limits.record_failure("user:admin", "addr:10.0.0.1")
        attempts += 1
    assert attempts == 10
    # Refused attempts are not counted: the address stays far from its own limit, and
    # every other name from it is let through ...
    assert limits.retry_after_s("user:bob", "addr:10.0.0.1") is None
    # ... and the name itself is not locked out elsewhere: its owner logs in from
    # anywhere else.
    assert limits.retry_after_s("user:admin", "addr:10.9.9.9") is None


def test_a_guess_spread_over_many_addresses_meets_the_accounts_own_bound() -> None:
    limits = _limits([0.0], accounts=25)
    for i in range(25):
        address = f"addr:10.0.1.{i}"
        assert limits.retry_after_s("user:admin", address) is None
        limits.record_failure("user:admin", address)
    # From an address that never failed, the right password too waits: the one bound
    # left, the account's across all addresses.
    assert limits.retry_after_s("user:admin", "addr:10.9.9.9") == 60
    assert limits.retry_after_s("user:bob", "addr:10.9.9.9") is None
    # A success takes back its own charge only: the attacker's other failures stay.
    limits.succeeded("user:admin", "addr:10.0.1.0")
    assert limits.retry_after_s("user:admin", "addr:10.9.9.9") is None
    limits.record_failure("user:admin", "addr:10.0.1.0")
    assert limits.retry_after_s("user:admin", "addr:10.9.9.9") == 60


def test_an_address_spraying_many_names_reaches_the_address_limit() -> None:
    limits = _limits([0.0])
    for i in range(100):
        assert limits.retry_after_s(f"user:n{i}", "addr:10.0.0.1") is None
        limits.record_failure(f"user:n{i}", "addr:10.0.0.1")
    assert limits.retry_after_s("user:admin", "addr:10.0.0.1") == 60
    assert limits.retry_after_s("user:admin", "addr:10.0.0.2") is None
    # A success gives back its one advance charge to the address, and clears the pair.
    limits.succeeded("user:n0", "addr:10.0.0.1")
    assert limits.retry_after_s("user:admin", "addr:10.0.0.1") is None


def test_limiter_memory_is_bounded() -> None:
    limiter = FailureLimiter(max_failures=3, window_s=60, clock=lambda: 0.0, max_keys=100)
    for i in range(1000):
        limiter.record_failure([f"user:{i}"])
    assert len(limiter._failures) <= 100
    assert limiter.retry_after_s(["user:999"]) is None  # one failure, not blocked


def test_tokens_verify_only_with_their_ring_and_policy() -> None:
    ring = tokens.KeyRing(GOOD_KEY.encode())
    policy = tokens.TokenPolicy.from_settings(ApiAuthSettings())
    now = datetime.now(UTC)
    token = tokens.issue(
        ring,
        policy,
        subject="client:gw",
        scopes=[Scope.READINGS_WRITE],
        now=now,
        version=3,
        turbine_id="T1",
    )
    principal = tokens.verify(token, ring, policy)
    assert principal.subject == "client:gw"
    assert principal.turbine_id == "T1"
    assert principal.token_version == 3
    assert principal.allows(Scope.READINGS_WRITE)
    assert not principal.allows(Scope.TELEMETRY_READ)

    other_ring = tokens.KeyRing(secrets.token_urlsafe(48).encode())
    with pytest.raises(tokens.InvalidTokenError):
        tokens.verify(token, other_ring, policy)
    # The old key, kept as a previous one, still verifies; its kid selects it.
    rotated = tokens.KeyRing(secrets.token_urlsafe(48).encode(), [GOOD_KEY.encode()])
    assert tokens.verify(token, rotated, policy).subject == "client:gw"
    expired = tokens.issue(
        ring, policy, subject="client:gw", scopes=[], now=now - timedelta(minutes=16), version=1
    )
    with pytest.raises(tokens.InvalidTokenError, match="expired"):
        tokens.verify(expired, ring, policy)


@pytest.mark.parametrize("version", [None, 0, -1, "1", 1.0, True])
def test_a_token_without_a_positive_integer_version_is_refused(version: object) -> None:
    ring = tokens.KeyRing(GOOD_KEY.encode())
    policy = tokens.TokenPolicy.from_settings(ApiAuthSettings())
    now = int(datetime.now(UTC).timestamp())
    claims = {
        "iss": policy.issuer,
        "aud": policy.audience,
        "sub": "user:x",
        "iat": now,
        "exp": now + 60,
        "scope": "",
        "ver": version,
    }
    if version is None:
        del claims["ver"]
    kid, key = ring.signing()
    token = jwt.encode(claims, key, algorithm=tokens.ALGORITHM, headers={"kid": kid})
    with pytest.raises(tokens.InvalidTokenError):
        tokens.verify(token, ring, policy)


def test_admin_implies_every_scope() -> None:
    admin = tokens.Principal(subject="user:root", scopes=frozenset({Scope.ADMIN}), token_version=1)
    assert all(admin.allows(scope) for scope in Scope)


def test_scopes_and_names_are_checked_before_they_are_stored() -> None:
    assert credentials.parse_scopes(["admin", "telemetry:read", "admin"]) == (
        Scope.TELEMETRY_READ,
        Scope.ADMIN,
    )
    with pytest.raises(CredentialsError, match="unknown scope"):
        credentials.parse_scopes(["root"])
    with pytest.raises(CredentialsError):
        credentials.check_name("user name", "bad name")
    assert credentials.hash_secret("pw").startswith("$argon2id$v=19$m=19456,t=2,p=1$")
    assert credentials.verify("pw", credentials.hash_secret("pw"))[0]
    assert not credentials.verify("pw", None)[0]
