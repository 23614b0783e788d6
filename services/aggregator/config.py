"""Settings of the aggregator (the HTTP API), from ``WINDPARK_*`` environment variables."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, model_validator

from windpark.settings import (
    ApiAuthSettings,
    ApiBrokerSettings,
    DatabaseSettings,
    WindparkSettings,
)


class Settings(WindparkSettings):
    db: DatabaseSettings = DatabaseSettings()
    # Connects as `api`, which may only publish to the telemetry exchange (docs/security.md).
    broker: ApiBrokerSettings = ApiBrokerSettings()

    # uvicorn sets no body limit: POST bodies are counted as they arrive and refused past this.
    max_body_bytes: Annotated[int, Field(ge=1024)] = 64 * 1024
    # Largest aggregate answer: buckets x turbines. Bigger requests get a 422 that names
    # a coarser bucket, instead of a slow answer nobody can plot.
    max_points: Annotated[int, Field(ge=1)] = 10_000
    # The park's sampling interval: what "complete" means in the quality report.
    expected_interval_s: Annotated[float, Field(gt=0)] = 1.0
    # Longest window of the raw-data analyses (quality flags, power curve).
    max_analysis_days: Annotated[int, Field(ge=1)] = 92
    site_altitude_m: float = 0.0
    # Browser origins allowed to call the API (CORS); empty means no CORS headers at all.
    cors_origins: list[str] = Field(default_factory=list)
    # Tokens travel in the Authorization header, so browsers need no credentials mode;
    # with it, "*" is refused at start-up (any site could act with a user's cookies).
    cors_allow_credentials: bool = False

    # Tokens: signing keys, lifetimes, login limits (WINDPARK_API__JWT_KEY, ...).
    api: ApiAuthSettings = ApiAuthSettings()
    # Proxies whose X-Forwarded-For / X-Forwarded-Proto are believed (uvicorn's
    # forwarded_allow_ips). Empty: nobody's, so no client can choose the address the
    # login limits count, nor make plain HTTP look like HTTPS.
    forwarded_allow_ips: list[str] = Field(default_factory=list)

    # A turbine provisioned after start-up is found by re-reading the registry when an
    # unknown id arrives, at most this often.
    registry_refresh_s: Annotated[float, Field(ge=0)] = 5.0
    # Backoff while the broker cannot be reached at start-up (the API serves reads meanwhile).
    broker_retry_initial_s: Annotated[float, Field(gt=0)] = 1.0
    broker_retry_max_s: Annotated[float, Field(gt=0)] = 30.0
    # How long a POST waits for the broker's confirm before answering 503.
    publish_timeout_s: Annotated[float, Field(gt=0)] = 5.0
    # Seconds suggested to clients in Retry-After when a dependency is down.
    retry_after_s: Annotated[int, Field(ge=1)] = 5
    # Server-side bound for one query, so a pathological request cannot hold a connection.
    db_command_timeout_s: Annotated[float, Field(gt=0)] = 30.0
    readiness_timeout_s: Annotated[float, Field(gt=0)] = 2.0

    @model_validator(mode="after")
    def _no_wildcard_with_credentials(self) -> Settings:
        if self.cors_allow_credentials and "*" in self.cors_origins:
            raise ValueError(
                "WINDPARK_CORS_ORIGINS may not contain '*' when WINDPARK_CORS_ALLOW_CREDENTIALS"
                " is true: list the origins"
            )
        return self
