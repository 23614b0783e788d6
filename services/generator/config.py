"""Settings of the generator (WINDPARK_* environment variables)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from windpark.contract import TURBINE_ID_RE
from windpark.settings import PROJECT_DIR, BrokerSettings, WindparkSettings
from windpark.simulation import FaultMix
from windpark.turbine_model import DEFAULT_MODEL


class Settings(WindparkSettings):
    # The broker user is each simulated turbine's own (its id), with the password from
    # the secrets folder (services/generator/transport.py).
    broker: BrokerSettings = BrokerSettings()
    # AMQP 0-9-1 with publisher confirms, or MQTT 3.1.1 QoS 1 as a field device would.
    transport: Literal["amqp", "mqtt"] = "amqp"
    # Identity: one explicit turbine (one container per turbine in compose), or
    # `turbines` consecutive park ids WTG01..WTGnn simulated in this one process.
    turbine_id: str | None = None
    # With claim_turbine set (compose's `--scale generator=N`, where every container has
    # the same environment), the generator takes the first of WTG01..WTG<park_size> whose
    # credentials the broker accepts: each turbine user may hold one connection at a time,
    # so the lease ends with the connection.
    claim_turbine: bool = False
    park_size: Annotated[int, Field(ge=1, le=100_000)] = 10
    # Prefix of the park's ids (WTG01, WTG02, ...).
    id_prefix: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,40}$")] = "WTG"
    turbines: Annotated[int, Field(ge=1, le=100_000)] = 1
    turbine_model: str = DEFAULT_MODEL
    interval_s: Annotated[float, Field(gt=0, le=3600)] = 1.0
    # Probability N that a reading carries an injected fault (the spec's erroneous data).
    error_rate: Annotated[float, Field(ge=0, le=1)] = 0.0
    # Relative weight of each fault kind: "default", or "kind=weight,..." (FaultMix.parse),
    # e.g. "out_of_order=1" with error_rate 1 to exercise one kind.
    fault_mix: str = "default"
    # Every generator of a park must share the seed: the park's wind field derives from it.
    seed: int = 20261128
    # Stop after this many readings per turbine (tests, benchmarks); None runs forever.
    max_readings: Annotated[int | None, Field(ge=1)] = None
    # JSON-lines file where the injected faults are recorded (tests and benchmarks only).
    ground_truth_path: Path | None = None
    # Each turbine's next seq, one small file per turbine (services/generator/state.py):
    # a restarted generator continues its sequence, so a seq_reset flag means a real reset.
    # In a container, put it on a volume.
    state_dir: Path = PROJECT_DIR / "var" / "state" / "generator"
    # Readings kept in memory while the broker is unreachable; a broker outage delays
    # readings, it does not lose them (until this many are waiting).
    buffer_max: Annotated[int, Field(ge=1)] = 1_000_000
    # Concurrent unconfirmed publishes.
    max_in_flight: Annotated[int, Field(ge=1, le=10_000)] = 256

    @field_validator("fault_mix")
    @classmethod
    def _known_fault_kinds(cls, value: str) -> str:
        FaultMix.parse(value)  # fails at start-up, not at the first faulty reading
        return value

    @model_validator(mode="after")
    def _identity(self) -> Settings:
        if self.turbine_id is not None and not TURBINE_ID_RE.match(self.turbine_id):
            raise ValueError(f"invalid turbine id {self.turbine_id!r}")
        return self
