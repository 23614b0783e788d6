"""Connection settings shared by the services.

Each service has its own ``Settings`` class in ``services/<name>/config.py``; these
are the pieces they compose (the database and the broker), read from
``WINDPARK_*`` environment variables. DSNs and URLs are built here, never
concatenated by hand elsewhere.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import quote

from pydantic import BaseModel, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

Environment = Literal["local", "test", "production"]


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
    host: str = "127.0.0.1"
    port: int = 5672
    vhost: str = "/"
    user: str = "guest"
    password: SecretStr = SecretStr("guest")
    # TLS: when ca_file is set the client connects with AMQPS and verifies the server
    # certificate and host name against that CA.
    tls: bool = False
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    heartbeat_s: Annotated[int, Field(ge=0)] = 30
    mqtt_port: int = 1883

    def url(self) -> str:
        scheme = "amqps" if self.tls else "amqp"
        auth = f"{quote(self.user, safe='')}:{quote(self.password.get_secret_value(), safe='')}"
        vhost = quote(self.vhost, safe="")
        return f"{scheme}://{auth}@{self.host}:{self.port}/{vhost}?heartbeat={self.heartbeat_s}"

    def ssl_context(self) -> ssl.SSLContext | None:
        if not self.tls:
            return None
        context = ssl.create_default_context(
            cafile=str(self.ca_file) if self.ca_file else None,
        )
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        if self.cert_file and self.key_file:
            context.load_cert_chain(str(self.cert_file), str(self.key_file))
        return context


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
