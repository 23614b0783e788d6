"""Analytics for psql users: documented views, the read-only analyst role's grants,
and (community license) compression and retention policies on raw readings.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28

The role ``windpark_analyst`` is created by ``windpark setup`` (roles need a
superuser); this migration grants it SELECT on the history views and the
rollups only, never on tables that may hold secrets.
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

ANALYST = "windpark_analyst"

# Bit -> name of windpark.validation.QualityFlag (docs/reason-codes.md).
FLAG_NAMES = {
    1: "power_wind_mismatch",
    2: "spike",
    4: "stuck_sensor",
    8: "seq_gap",
    16: "out_of_order",
    32: "seq_reset",
}

PARK_LEVELS = {"1m": 60, "10m": 600, "1h": 3600, "1d": 86400}

VIEWS = [
    "readings_history",
    "reject_log",
    *(f"park_stats_{level}" for level in PARK_LEVELS),
    *(f"turbine_stats_{level}" for level in PARK_LEVELS),
]
GRANTED = [
    *VIEWS,
    "turbines",
    "readings",
    "latest_readings",
    "rejected_readings",
    "duplicate_readings",
    *(f"rollup_{level}" for level in PARK_LEVELS),
    *(f"rollup_{level}_stats" for level in PARK_LEVELS),
]


def _flag_names_sql(column: str) -> str:
    items = ", ".join(
        f"CASE WHEN {column} & {bit} <> 0 THEN '{name}' END" for bit, name in FLAG_NAMES.items()
    )
    return f"array_remove(ARRAY[{items}], NULL)"


# The two stats views of a level, as functions so that 0007's downgrade can restore them.
def turbine_stats_view(level: str) -> str:
    seconds = PARK_LEVELS[level]
    return f"""
            CREATE VIEW turbine_stats_{level} AS
            SELECT s.*, s.power_avg_kw * {seconds} / 3600.0 AS energy_kwh,
                   s.power_avg_kw / t.rated_power_kw AS capacity_factor,
                   s.n_available::double precision / s.n AS availability
            FROM rollup_{level}_stats s JOIN turbines t USING (turbine_id)
            """


def park_stats_view(level: str) -> str:
    seconds = PARK_LEVELS[level]
    return f"""
            CREATE VIEW park_stats_{level} AS
            SELECT r.bucket,
                   count(*) AS turbines_reporting,
                   sum(r.n) AS n,
                   sum(r.power_sum) / sum(r.n) AS park_mean_power_kw,
                   sum(r.power_sum / r.n) AS park_total_power_kw,
                   sum(r.power_sum / r.n) * {seconds} / 3600.0 AS energy_kwh,
                   sum(r.power_sum / r.n) / sum(t.rated_power_kw) AS capacity_factor,
                   sum(r.n_available)::double precision / sum(r.n) AS availability,
                   sum(r.wind_sum) / sum(r.n) AS wind_speed_avg_ms,
                   sum(r.temp_sum) / sum(r.n) AS temperature_avg_c
            FROM rollup_{level} r JOIN turbines t USING (turbine_id)
            GROUP BY r.bucket
            """


def upgrade() -> None:
    op.execute(
        f"""
        CREATE VIEW readings_history AS
        SELECT r.ts, r.turbine_id, t.name AS turbine_name, t.model, t.rated_power_kw,
               r.seq, r.state, r.power_kw, r.wind_speed_ms, r.temperature_c,
               r.rotor_rpm, r.pitch_deg, r.nacelle_temperature_c, r.wind_direction_deg,
               r.setpoint_kw, r.quality_flags, {_flag_names_sql("r.quality_flags")} AS quality,
               r.source, r.received_at, r.received_at - r.ts AS delay
        FROM readings r JOIN turbines t USING (turbine_id)
        """
    )
    op.execute(
        """
        CREATE VIEW reject_log AS
        SELECT received_at, source, turbine_id, seq, reasons,
               (SELECT string_agg(d->>'message', '; ') FROM jsonb_array_elements(details) d)
                   AS messages,
               -- Payloads are bytes as received, not always UTF-8: shown escaped.
               encode(payload, 'escape') AS payload_text, octet_length(payload) AS payload_bytes
        FROM rejected_readings
        """
    )
    for level in PARK_LEVELS:
        op.execute(turbine_stats_view(level))
        op.execute(park_stats_view(level))
    grants = ", ".join(GRANTED)
    op.execute(
        f"""
        DO $$
        BEGIN
            IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{ANALYST}') THEN
                GRANT USAGE ON SCHEMA public TO {ANALYST};
                GRANT SELECT ON {grants} TO {ANALYST};
            END IF;
        END
        $$
        """
    )
    if _license() == "timescale":
        # Raw rows older than the validator's window are never written again: compress them.
        op.execute(
            "ALTER TABLE readings SET (timescaledb.compress, "
            "timescaledb.compress_segmentby = 'turbine_id', timescaledb.compress_orderby = 'ts')"
        )
        op.execute("SELECT add_compression_policy('readings', INTERVAL '8 days')")
        # The default; `windpark retention` aligns it with WINDPARK_RETENTION_DAYS.
        op.execute("SELECT add_retention_policy('readings', INTERVAL '90 days')")


def _license() -> str:
    return str(op.get_bind().exec_driver_sql("SHOW timescaledb.license").scalar())


def downgrade() -> None:
    if _license() == "timescale":
        op.execute("SELECT remove_retention_policy('readings', if_exists => true)")
        op.execute("SELECT remove_compression_policy('readings', if_exists => true)")
        op.execute("SELECT decompress_chunk(c, true) FROM show_chunks('readings') c")
        op.execute("ALTER TABLE readings SET (timescaledb.compress = false)")
    op.execute(
        f"""
        DO $$
        BEGIN
            IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{ANALYST}') THEN
                REVOKE ALL ON {", ".join(GRANTED)} FROM {ANALYST};
            END IF;
        END
        $$
        """
    )
    for view in reversed(VIEWS):
        op.execute(f"DROP VIEW {view}")
