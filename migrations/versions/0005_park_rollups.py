"""Park rollups: one row per bucket for the whole park, at 1 minute, 10 minutes, 1 hour
and 1 day.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30

The park series (``GET /agregados/``, ``/v1/park/aggregates``) over a long window
was computed on read by grouping the per-turbine rollups by bucket: a year of hours
for 10 turbines read and regrouped 87 600 rows per request. These relations hold
that grouping, one row per bucket:

- ``turbines_reporting``: turbines with readings in the bucket;
- ``n``, ``n_available``, ``power_sum``, ``wind_sum``, ``temp_sum``: sums over the
  turbines' rows, so means over every reading of the park are ``*_sum / n``;
- ``power_mean_sum``: the sum of each turbine's mean power (``power_sum / n`` per
  turbine), the park's total power. It is not additive across buckets, which is
  why each level is grouped from the per-turbine rollup of the same width.

Two engines, one contract, as in 0002:

- ``apache``: hypertables that windpark regroups, in the ingest transaction, for
  every bucket the transaction touched (``windpark.rollups.refresh_park``);
- ``timescale``: continuous aggregates on the per-turbine continuous aggregate of the
  same width, with real-time aggregation and refresh policies one bucket behind it.

Upgrading a running system: stop the concentrators while this migration runs (compose
starts them after the migrate service): it fills the park rows from the rollups as
they are then, and a concentrator of an earlier version would not keep them.
"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

ANALYST = "windpark_analyst"

# bucket name -> (bucket width, hypertable chunk interval), as 0002's.
LEVELS = {
    "1m": ("1 minute", "30 days"),
    "10m": ("10 minutes", "180 days"),
    "1h": ("1 hour", "3650 days"),
    "1d": ("1 day", "3650 days"),
}
# Refresh policies of the continuous aggregates: 0002's window for the level, ending
# one bucket earlier (a bucket is materialized once its per-turbine level has been;
# newer ones are aggregated in real time from that level), scheduled as often.
POLICIES = {
    "1m": ("8 days", "2 minutes", "1 minute"),
    "10m": ("8 days", "20 minutes", "5 minutes"),
    "1h": ("9 days", "2 hours", "15 minutes"),
    "1d": ("10 days", "2 days", "1 hour"),
}


def park_select(level: str) -> str:
    """The park row of each bucket, from the per-turbine rollup of the same width.

    Shared by the continuous aggregate, the Apache tables' first fill and
    ``windpark.rollups`` (which keeps its own copy of these expressions; a test
    compares the two).
    """
    width = LEVELS[level][0]
    # sum(bigint) is numeric: cast back, as 0002 does.
    return (
        f"SELECT time_bucket(INTERVAL '{width}', bucket) AS bucket, "
        "count(*) AS turbines_reporting, sum(n)::bigint AS n, "
        "sum(n_available)::bigint AS n_available, "
        "sum(power_sum) AS power_sum, sum(power_sum / n) AS power_mean_sum, "
        "sum(wind_sum) AS wind_sum, sum(temp_sum) AS temp_sum "
        f"FROM rollup_{level} GROUP BY 1"
    )


def _license() -> str:
    return str(op.get_bind().exec_driver_sql("SHOW timescaledb.license").scalar())


def _grant(names: list[str]) -> None:
    op.execute(
        f"""
        DO $$
        BEGIN
            IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{ANALYST}') THEN
                GRANT SELECT ON {", ".join(names)} TO {ANALYST};
            END IF;
        END
        $$
        """
    )


def upgrade() -> None:
    continuous = _license() == "timescale"
    for level, (_width, chunk) in LEVELS.items():
        table = f"park_rollup_{level}"
        if continuous:
            op.execute(
                f"CREATE MATERIALIZED VIEW {table} WITH (timescaledb.continuous, "
                f"timescaledb.materialized_only = false) AS {park_select(level)} WITH NO DATA"
            )
            # WITH DATA cannot run in the migration's transaction; until the first
            # refresh, real-time aggregation computes the rows from rollup_<level>.
            start, end, every = POLICIES[level]
            op.execute(
                f"SELECT add_continuous_aggregate_policy('{table}', "
                f"start_offset => INTERVAL '{start}', end_offset => INTERVAL '{end}', "
                f"schedule_interval => INTERVAL '{every}')"
            )
            continue
        op.execute(
            f"""
            CREATE TABLE {table} (
            bucket              timestamptz NOT NULL,
            turbines_reporting  bigint NOT NULL CHECK (turbines_reporting > 0),
            n                   bigint NOT NULL CHECK (n > 0),
            n_available         bigint NOT NULL,
            power_sum           double precision NOT NULL,
            power_mean_sum      double precision NOT NULL,
            wind_sum            double precision NOT NULL,
            temp_sum            double precision NOT NULL,
            CONSTRAINT pk_{table} PRIMARY KEY (bucket)
            )
            """
        )
        op.execute(f"SELECT create_hypertable('{table}', by_range('bucket', INTERVAL '{chunk}'))")
        # History that is already there (a database migrated after its backfill).
        op.execute(f"INSERT INTO {table} {park_select(level)}")
    _grant([f"park_rollup_{level}" for level in LEVELS])


def downgrade() -> None:
    continuous = _license() == "timescale"
    for level in reversed(LEVELS):
        if continuous:
            op.execute(f"DROP MATERIALIZED VIEW park_rollup_{level}")
        else:
            op.execute(f"DROP TABLE park_rollup_{level}")
