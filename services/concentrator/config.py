"""Settings of the concentrator (WINDPARK_* environment variables)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, model_validator

from windpark.settings import ConcentratorBrokerSettings, DatabaseSettings, WindparkSettings


class Settings(WindparkSettings):
    db: DatabaseSettings = DatabaseSettings()
    # Connects as `concentrator`, which may only consume its queue.
    broker: ConcentratorBrokerSettings = ConcentratorBrokerSettings()
    # A batch is written when it holds batch_size messages or batch_max_wait_s has passed
    # since its first message, whichever comes first.
    batch_size: Annotated[int, Field(ge=1, le=50_000)] = 500
    batch_max_wait_s: Annotated[float, Field(gt=0, le=60)] = 0.2
    # Quorum queues only have per-consumer prefetch; it must be >= batch_size or a batch
    # can never fill (the broker stops delivering until we ack).
    prefetch: Annotated[int, Field(ge=1, le=65_535)] = 2000
    # Backoff while PostgreSQL is unreachable: messages stay unacked (not requeued).
    db_retry_initial_s: Annotated[float, Field(gt=0)] = 0.2
    db_retry_max_s: Annotated[float, Field(gt=0)] = 5.0
    # How often the turbine registry is re-read when an unknown turbine id shows up.
    registry_refresh_min_s: Annotated[float, Field(ge=0)] = 2.0
    # Metrics (Prometheus text) on this port; 0 disables the endpoint.
    metrics_port: Annotated[int, Field(ge=0, le=65_535)] = 0
    metrics_host: str = "127.0.0.1"
    # Raw readings (and rejects) older than this are dropped; rollups are kept.
    retention_days: Annotated[int, Field(ge=8)] = 90
    retention_every_s: Annotated[float, Field(gt=0)] = 3600.0

    @model_validator(mode="after")
    def _prefetch_covers_batch(self) -> Settings:
        if self.prefetch < self.batch_size:
            raise ValueError(
                f"prefetch ({self.prefetch}) must be >= batch_size ({self.batch_size})"
            )
        return self
