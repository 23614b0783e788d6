"""Connection settings shared by the services.

Each service has its own ``Settings`` class in ``services/<name>/config.py``; these
are the pieces they compose (the database and the broker), read from
``WINDPARK_*`` environment variables. DSNs and URLs are built here, never
concatenated by hand elsewhere.
"""

from __future__ import annotations

import os
import ssl
from pathlib import Path
from typing import Annotated, Final, Literal
from urllib.parse import quote

from pydantic import BaseModel, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

Environment = Literal["local", "test", "production"]

# The checkout (editable install) or where WINDPARK_PROJECT_DIR says (the container images).
PROJECT_DIR: Final = Path(
    os.environ.get("WINDPARK_PROJECT_DIR") or Path(__file__).resolve().parent.parent
)
# Both folders are git-ignored; scripts/tls.sh and scripts/broker.sh / `windpark setup` fill them.
DEFAULT_CA_FILE: Final = PROJECT_DIR / "var" / "tls" / "ca.crt"
DEFAULT_BROKER_SECRETS_DIR: Final = PROJECT_DIR / "var" / "secrets" / "broker"

# Broker identities (docs/security.md has their permissions). Turbines connect as
# themselves: the user name is the turbine id.
ADMIN_USER: Final = "windpark-admin"
CONCENTRATOR_USER: Final = "concentrator"
API_USER: Final = "api"
DEFAULT_VHOST: Final = "windpark"


class BrokerConfigurationError(RuntimeError):
    """The broker settings cannot produce a connection (no user, no password)."""


class DatabaseSettings(BaseModel):
    host: str = "127.0.0.1"
    port: int = 5432
    name: str = "windpark"
    user: str = "windpark"
    password: SecretStr = SecretStr("")
    pool_min_size: Annotated[int, Field(ge=1)] = 1
    pool_max_size: Annotated[int, Field(ge=1)] = 10

    def dsn(self, *, driver: str = "postgresql") -> str:
        """libpq URL; ``driver='postgresql+psycopg'`` gives SQLAlchemy's form for alembic."""
        auth = quote(self.user, safe="")
        password = self.password.get_secret_value()
        if password:
            auth += ":" + quote(password, safe="")
        return f"{driver}://{auth}@{self.host}:{self.port}/{quote(self.name, safe='')}"


class BrokerSettings(BaseModel):
    """Where and as whom to reach windpark's broker (``scripts/broker.sh``).

    Secure by default: AMQPS on localhost:5671, the server's certificate and host name
    verified against windpark's own CA only. The password is ``password`` when given,
    else the content of ``password_file``, else ``secrets_dir/<user>``.
    """

    host: str = "localhost"
    port: int = 5671
    vhost: str = DEFAULT_VHOST
    # None: the service decides (each service's settings subclass names its identity;
    # a generator connects as its turbine).
    user: str | None = None
    password: SecretStr | None = None
    password_file: Path | None = None
    secrets_dir: Path = DEFAULT_BROKER_SECRETS_DIR
    # Plain AMQP only against the broker's local dev profile (WINDPARK_BROKER_PROFILE=dev,
    # port 5673); nothing listens without TLS in the secure profile.
    tls: bool = True
    # The CA that signed the broker's certificate; None trusts the system's CAs instead.
    ca_file: Path | None = DEFAULT_CA_FILE
    # A client certificate, for brokers that ask for one (windpark's does not).
    cert_file: Path | None = None
    key_file: Path | None = None
    heartbeat_s: Annotated[int, Field(ge=0)] = 30
    mqtt_port: int = 8883
    # The management HTTP API (HTTPS when tls): used by `windpark setup` to provision users.
    management_port: int = 15671

    def for_user(self, user: str) -> BrokerSettings:
        """The same broker as ``user``. A password given for no user in particular (a
        one-turbine generator's WINDPARK_BROKER__PASSWORD_FILE) is kept; another user's
        is dropped, so the password comes from ``secrets_dir/<user>``."""
        if self.user is None or self.user == user:
            return self.model_copy(update={"user": user})
        return self.model_copy(update={"user": user, "password": None, "password_file": None})

    def username(self) -> str:
        if not self.user:
            raise BrokerConfigurationError("no broker user configured (WINDPARK_BROKER__USER)")
        return self.user

    def password_value(self) -> str:
        if self.password is not None:
            return self.password.get_secret_value()
        path = self.password_file or self.secrets_dir / self.username()
        try:
            value = path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise BrokerConfigurationError(
                f"no password for broker user {self.username()!r}: cannot read {path} ({exc}); "
                "run `windpark setup` (or `windpark turbines add`) or set "
                "WINDPARK_BROKER__PASSWORD_FILE"
            ) from exc
        if not value:
            raise BrokerConfigurationError(f"broker password file {path} is empty")
        return value

    def url(self) -> str:
        """The AMQP URL, credentials included: pass it to aio-pika, never to a log."""
        scheme = "amqps" if self.tls else "amqp"
        auth = f"{quote(self.username(), safe='')}:{quote(self.password_value(), safe='')}"
        vhost = quote(self.vhost, safe="")
        return f"{scheme}://{auth}@{self.host}:{self.port}/{vhost}?heartbeat={self.heartbeat_s}"

    def management_url(self) -> str:
        scheme = "https" if self.tls else "http"
        return f"{scheme}://{self.host}:{self.management_port}/api"

    def mqtt_username(self) -> str:
        # RabbitMQ's MQTT plugin picks the vhost from a "vhost:user" name; the topic
        # permission's {username} is still the bare user.
        return f"{self.vhost}:{self.username()}"

    def ssl_context(self) -> ssl.SSLContext | None:
        """The client side of TLS: verify the broker's chain and host name, TLS 1.2+."""
        if not self.tls:
            return None
        # With a cafile the system's CAs are not loaded: only windpark's CA is trusted.
        context = ssl.create_default_context(
            ssl.Purpose.SERVER_AUTH, cafile=str(self.ca_file) if self.ca_file else None
        )
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        if self.cert_file and self.key_file:
            context.load_cert_chain(str(self.cert_file), str(self.key_file))
        return context


# Each process connects as its own identity; these defaults survive partial overrides
# from the environment (WINDPARK_BROKER__VHOST=... keeps the class's user).
class AdminBrokerSettings(BrokerSettings):
    user: str | None = ADMIN_USER


class ConcentratorBrokerSettings(BrokerSettings):
    user: str | None = CONCENTRATOR_USER


class ApiBrokerSettings(BrokerSettings):
    user: str | None = API_USER


class WindparkSettings(BaseSettings):
    """Base for every service's settings: the WINDPARK_ prefix and nested ``__`` keys.

    ``WINDPARK_DB__HOST=db`` sets ``settings.db.host``.
    """

    model_config = SettingsConfigDict(
        env_prefix="WINDPARK_",
        env_nested_delimiter="__",
        extra="ignore",
    )

    environment: Environment = "local"


# API authentication -------------------------------------------------------------------------
# `windpark setup` fills this git-ignored folder in local and test environments only: the
# JWT signing key (jwt.key) and the password of the local `admin` API user (admin-password).
DEFAULT_API_SECRETS_DIR: Final = PROJECT_DIR / "var" / "secrets" / "api"
# HS256 needs a key at least as long as its hash (RFC 7518 §3.2).
MIN_JWT_KEY_BYTES: Final = 32
# Values copied from examples and templates; a key containing one is not a secret.
_PLACEHOLDER_MARKERS: Final = ("changethis", "changeme", "change-me", "placeholder", "example")


class ApiKeyError(ValueError):
    """A JWT key that is missing, short or a placeholder: the API refuses to start."""


def check_jwt_key(key: bytes, *, source: str) -> bytes:
    """The key if it can sign tokens, else ApiKeyError naming where it came from."""
    if len(key) < MIN_JWT_KEY_BYTES:
        raise ApiKeyError(
            f"the JWT key from {source} has {len(key)} bytes; at least {MIN_JWT_KEY_BYTES} "
            "random bytes are needed (python -c 'import secrets; print(secrets.token_urlsafe(48))')"
        )
    lowered = key.lower()
    if any(marker.encode() in lowered for marker in _PLACEHOLDER_MARKERS) or len(set(key)) < 8:
        raise ApiKeyError(f"the JWT key from {source} is a placeholder, not a random secret")
    return key


class ApiAuthSettings(BaseModel):
    """Tokens of the HTTP API (``WINDPARK_API__*``): signing keys, lifetimes, login limits.

    The signing key is ``jwt_key`` when given, else the content of ``jwt_key_file``.
    Previous keys verify tokens signed before a rotation and never sign new ones.
    """

    jwt_key: SecretStr | None = None
    jwt_key_file: Path = DEFAULT_API_SECRETS_DIR / "jwt.key"
    jwt_previous_keys: list[SecretStr] = Field(default_factory=list)
    jwt_previous_key_files: list[Path] = Field(default_factory=list)
    issuer: str = "windpark"
    audience: str = "windpark-api"
    token_ttl_s: Annotated[int, Field(ge=60, le=3600)] = 900
    # Clock difference tolerated between this API and whoever checks exp and iat.
    leeway_s: Annotated[int, Field(ge=0, le=300)] = 30
    # Failed logins within the window, before 429 (services/aggregator/login_limits): per
    # user name or client id from one address (small: stops guessing one password), per
    # name from all addresses together (larger: a bound on a distributed guess that one
    # address alone cannot reach, so it cannot lock the name out for everyone), and per
    # address over every name (stops spraying).
    login_max_failures: Annotated[int, Field(ge=1)] = 10
    login_max_failures_per_account: Annotated[int, Field(ge=1)] = 100
    login_max_failures_per_address: Annotated[int, Field(ge=1)] = 100
    login_window_s: Annotated[int, Field(ge=1)] = 60
    # How long the API trusts what it read of an account's token version: the longest a
    # deleted, disabled or changed account's token can still pass (revocation.py).
    token_version_max_age_s: Annotated[float, Field(gt=0, le=60)] = 2.0
    # Argon2id takes 19 MiB and ~30 ms per check: bound how many run at once.
    max_concurrent_hashes: Annotated[int, Field(ge=1)] = 4
    # Local and test only: where `windpark setup` writes the admin user's password.
    secrets_dir: Path = DEFAULT_API_SECRETS_DIR

    @field_validator("jwt_key")
    @classmethod
    def _key_is_a_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            check_jwt_key(value.get_secret_value().encode(), source="WINDPARK_API__JWT_KEY")
        return value

    @field_validator("jwt_previous_keys")
    @classmethod
    def _previous_keys_are_secrets(cls, values: list[SecretStr]) -> list[SecretStr]:
        for value in values:
            check_jwt_key(
                value.get_secret_value().encode(), source="WINDPARK_API__JWT_PREVIOUS_KEYS"
            )
        return values

    @property
    def admin_password_file(self) -> Path:
        return self.secrets_dir / "admin-password"

    def signing_key(self) -> bytes:
        if self.jwt_key is not None:
            return self.jwt_key.get_secret_value().encode()
        return _read_key_file(self.jwt_key_file)

    def previous_keys(self) -> list[bytes]:
        return [k.get_secret_value().encode() for k in self.jwt_previous_keys] + [
            _read_key_file(path) for path in self.jwt_previous_key_files
        ]


def _read_key_file(path: Path) -> bytes:
    try:
        key = path.read_bytes().strip()
    except OSError as exc:
        raise ApiKeyError(
            f"no JWT key: cannot read {path} ({exc.strerror}); set WINDPARK_API__JWT_KEY or "
            "WINDPARK_API__JWT_KEY_FILE (in a local checkout, `windpark setup` creates one)"
        ) from exc
    return check_jwt_key(key, source=str(path))
