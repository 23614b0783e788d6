"""Core schema: turbines registry, readings hypertable, rejects, duplicates, latest values.

Revision ID: 0001
Revises:
Create Date: 2026-11-28
"""

from __future__ import annotations

from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

STATES = "('idle', 'running', 'storm', 'fault', 'maintenance', 'curtailed')"
SOURCES = "('amqp', 'mqtt', 'http', 'backfill')"


def upgrade() -> None:
    # The extension is created by `windpark setup` as a superuser; this is a no-op then,
    # and makes a database prepared by other means (the compose image) work as well.
    op.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")

    op.execute(
        """
        CREATE TABLE turbines (
            turbine_id      text PRIMARY KEY CHECK (turbine_id ~ '^[A-Za-z0-9_-]{1,64}$'),
            name            text NOT NULL,
            model           text NOT NULL,
            rated_power_kw  double precision NOT NULL CHECK (rated_power_kw > 0),
            created_at      timestamptz NOT NULL DEFAULT now()
        )
        """
    )

    # One row per turbine and device time: the primary key makes every write idempotent.
    op.execute(
        f"""
        CREATE TABLE readings (
            ts                      timestamptz NOT NULL,
            turbine_id              text NOT NULL REFERENCES turbines (turbine_id),
            seq                     bigint NOT NULL,
            power_kw                double precision NOT NULL,
            wind_speed_ms           double precision NOT NULL,
            temperature_c           double precision NOT NULL,
            state                   text NOT NULL CHECK (state IN {STATES}),
            rotor_rpm               double precision,
            pitch_deg               double precision,
            nacelle_temperature_c   double precision,
            wind_direction_deg      double precision,
            setpoint_kw             double precision,
            quality_flags           integer NOT NULL DEFAULT 0,
            source                  text NOT NULL CHECK (source IN {SOURCES}),
            received_at             timestamptz NOT NULL,
            CONSTRAINT pk_readings PRIMARY KEY (turbine_id, ts)
        )
        """
    )
    op.execute("SELECT create_hypertable('readings', by_range('ts', INTERVAL '1 day'))")
    op.execute("CREATE INDEX ix_readings_turbine_id_seq ON readings (turbine_id, seq)")

    # Every rejected message, with the bytes as received: nothing is lost.
    # dedup_key (the AMQP message id, or a digest) makes a redelivered reject idempotent.
    op.execute(
        f"""
        CREATE TABLE rejected_readings (
            id           bigint GENERATED ALWAYS AS IDENTITY,
            received_at  timestamptz NOT NULL,
            source       text NOT NULL CHECK (source IN {SOURCES}),
            turbine_id   text,
            seq          bigint,
            payload      bytea NOT NULL,
            reasons      text[] NOT NULL CHECK (cardinality(reasons) > 0),
            details      jsonb NOT NULL,
            dedup_key    text NOT NULL,
            CONSTRAINT pk_rejected_readings PRIMARY KEY (id),
            CONSTRAINT uq_rejected_readings_dedup_key UNIQUE (dedup_key)
        )
        """
    )
    op.execute("CREATE INDEX ix_rejected_readings_received_at ON rejected_readings (received_at)")
    op.execute(
        "CREATE INDEX ix_rejected_readings_turbine_id_received_at "
        "ON rejected_readings (turbine_id, received_at)"
    )

    # A message whose (turbine, ts) is already stored: absorbed, and counted here.
    op.execute(
        f"""
        CREATE TABLE duplicate_readings (
            dedup_key    text NOT NULL,
            turbine_id   text NOT NULL,
            ts           timestamptz NOT NULL,
            seq          bigint NOT NULL,
            source       text NOT NULL CHECK (source IN {SOURCES}),
            received_at  timestamptz NOT NULL,
            CONSTRAINT pk_duplicate_readings PRIMARY KEY (dedup_key)
        )
        """
    )
    op.execute(
        "CREATE INDEX ix_duplicate_readings_turbine_id_ts ON duplicate_readings (turbine_id, ts)"
    )

    # The latest reading of each turbine, kept in the ingest transaction so that
    # "latest value per device" is one small table read, not a scan of the hypertable.
    op.execute(
        f"""
        CREATE TABLE latest_readings (
            turbine_id              text PRIMARY KEY REFERENCES turbines (turbine_id),
            ts                      timestamptz NOT NULL,
            seq                     bigint NOT NULL,
            power_kw                double precision NOT NULL,
            wind_speed_ms           double precision NOT NULL,
            temperature_c           double precision NOT NULL,
            state                   text NOT NULL CHECK (state IN {STATES}),
            rotor_rpm               double precision,
            pitch_deg               double precision,
            nacelle_temperature_c   double precision,
            wind_direction_deg      double precision,
            setpoint_kw             double precision,
            quality_flags           integer NOT NULL,
            source                  text NOT NULL,
            received_at             timestamptz NOT NULL
        )
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE latest_readings")
    op.execute("DROP TABLE duplicate_readings")
    op.execute("DROP TABLE rejected_readings")
    op.execute("DROP TABLE readings")
    op.execute("DROP TABLE turbines")
