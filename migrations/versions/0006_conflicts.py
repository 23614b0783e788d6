"""Conflicts: two different readings with the same (turbine, ts) kept with their bytes and values.

The readings table holds one row per turbine and device time. A second message with
the same key but other values is not a redelivery: before this table it was counted in
``duplicate_readings``, which keeps only the key, and its values were lost. Each such
message is kept here once (``dedup_key``: a redelivery of the conflicting message is a
duplicate, not a second conflict), with the bytes as received and the values decoded.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

STATES = "('idle', 'running', 'storm', 'fault', 'maintenance', 'curtailed')"
SOURCES = "('amqp', 'mqtt', 'http', 'backfill')"
ANALYST = "windpark_analyst"


def upgrade() -> None:
    op.execute(
        f"""
        CREATE TABLE conflicting_readings (
            id                      bigint GENERATED ALWAYS AS IDENTITY,
            dedup_key               text NOT NULL,
            ts                      timestamptz NOT NULL,
            turbine_id              text NOT NULL,
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
            source                  text NOT NULL CHECK (source IN {SOURCES}),
            received_at             timestamptz NOT NULL,
            payload                 bytea NOT NULL,
            -- Reading fields whose value differs from the stored row's, when it was kept.
            differs                 text[] NOT NULL,
            CONSTRAINT pk_conflicting_readings PRIMARY KEY (id),
            CONSTRAINT uq_conflicting_readings_dedup_key UNIQUE (dedup_key)
        )
        """
    )
    op.execute(
        "CREATE INDEX ix_conflicting_readings_turbine_id_ts "
        "ON conflicting_readings (turbine_id, ts)"
    )
    op.execute("CREATE INDEX ix_conflicting_readings_ts ON conflicting_readings (ts)")
    op.execute(
        f"""
        DO $$
        BEGIN
            IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{ANALYST}') THEN
                GRANT SELECT ON conflicting_readings TO {ANALYST};
            END IF;
        END
        $$
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE conflicting_readings")
