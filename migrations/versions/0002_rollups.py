"""Rollups: per-turbine statistics at 1 minute, 10 minutes, 1 hour and 1 day.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28

Each rollup keeps sums, not means: count, sum, sum of squares, min and max per
channel. Sums add up exactly when late readings arrive in a bucket that already
has rows, and coarser buckets are sums of finer ones; mean and standard
deviation are derived when read (see the ``*_stats`` views).

Two engines, one contract (relation names and columns), chosen here from
``SHOW timescaledb.license``:

- ``apache`` (Debian's build): hypertables that windpark upserts in the same
  transaction as the raw readings (windpark/rollups.py), so they are exact and
  current at commit.
- ``timescale`` (the community license, the compose image): hierarchical
  continuous aggregates (1m on readings, 10m on 1m, 1h on 10m, 1d on 1h) with
  real-time aggregation, so the newest rows are always included, and refresh
  policies whose window covers the validator's accepted age (7 days) so late
  readings are folded in at the next refresh.

The API and psql read the same names either way; the concentrator asks
``windpark.rollups.engine`` which one it is writing for.
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

# bucket name -> (bucket width, hypertable chunk interval)
LEVELS = {
    "1m": ("1 minute", "7 days"),
    "10m": ("10 minutes", "30 days"),
    "1h": ("1 hour", "180 days"),
    "1d": ("1 day", "3650 days"),
}
CHANNELS = ("power", "wind", "temp")


def _columns() -> str:
    cols = []
    for ch in CHANNELS:
        cols += [
            f"{ch}_sum double precision NOT NULL",
            f"{ch}_sumsq double precision NOT NULL",
            f"{ch}_min double precision NOT NULL",
            f"{ch}_max double precision NOT NULL",
        ]
    return ",\n            ".join(cols)


def _stats_view(level: str) -> str:
    parts = []
    for ch, unit in (("power", "kw"), ("wind", "ms"), ("temp", "c")):
        name = {"power": "power", "wind": "wind_speed", "temp": "temperature"}[ch]
        parts.append(
            f"{ch}_sum / n AS {name}_avg_{unit}, "
            f"{ch}_min AS {name}_min_{unit}, "
            f"{ch}_max AS {name}_max_{unit}, "
            # Sample standard deviation from the sums; greatest() guards the tiny
            # negative values that rounding can leave when all samples are equal.
            f"CASE WHEN n > 1 THEN sqrt(greatest(({ch}_sumsq - {ch}_sum * {ch}_sum / n) "
            f"/ (n - 1), 0)) END AS {name}_std_{unit}"
        )
    return (
        f"CREATE VIEW rollup_{level}_stats AS SELECT bucket, turbine_id, n, n_available, "
        + ", ".join(parts)
        + f" FROM rollup_{level}"
    )


# Continuous-aggregate refresh policies: (start_offset, end_offset, schedule_interval).
# start_offset exceeds the validator's 7-day acceptance window, so every accepted late
# reading lies inside a refreshed range.
POLICIES = {
    "1m": ("8 days", "1 minute", "1 minute"),
    "10m": ("8 days", "10 minutes", "5 minutes"),
    "1h": ("9 days", "1 hour", "15 minutes"),
    "1d": ("10 days", "1 day", "1 hour"),
}


def _license() -> str:
    return str(op.get_bind().exec_driver_sql("SHOW timescaledb.license").scalar())


def _cagg_select(level: str, source: str | None) -> str:
    width = LEVELS[level][0]
    if source is None:  # the first level reads raw readings
        raw = {"power": "power_kw", "wind": "wind_speed_ms", "temp": "temperature_c"}
        stats = ", ".join(
            f"sum({c}) AS {ch}_sum, sum({c} * {c}) AS {ch}_sumsq, "
            f"min({c}) AS {ch}_min, max({c}) AS {ch}_max"
            for ch, c in raw.items()
        )
        return (
            f"SELECT time_bucket(INTERVAL '{width}', ts) AS bucket, turbine_id, "
            "count(*) AS n, "
            "count(*) FILTER (WHERE state NOT IN ('fault', 'maintenance')) AS n_available, "
            f"{stats} FROM readings GROUP BY 1, 2"
        )
    stats = ", ".join(
        f"sum({ch}_sum) AS {ch}_sum, sum({ch}_sumsq) AS {ch}_sumsq, "
        f"min({ch}_min) AS {ch}_min, max({ch}_max) AS {ch}_max"
        for ch in CHANNELS
    )
    # sum(bigint) is numeric: cast back so every level has the same column types.
    return (
        f"SELECT time_bucket(INTERVAL '{width}', bucket) AS bucket, turbine_id, "
        "sum(n)::bigint AS n, sum(n_available)::bigint AS n_available, "
        f"{stats} FROM {source} GROUP BY 1, 2"
    )


def _upgrade_continuous() -> None:
    source = None
    for level in LEVELS:
        op.execute(
            f"CREATE MATERIALIZED VIEW rollup_{level} WITH (timescaledb.continuous, "
            "timescaledb.materialized_only = false) AS "
            f"{_cagg_select(level, source)} WITH NO DATA"
        )
        start, end, every = POLICIES[level]
        op.execute(
            f"SELECT add_continuous_aggregate_policy('rollup_{level}', "
            f"start_offset => INTERVAL '{start}', end_offset => INTERVAL '{end}', "
            f"schedule_interval => INTERVAL '{every}')"
        )
        op.execute(_stats_view(level))
        source = f"rollup_{level}"


def upgrade() -> None:
    if _license() == "timescale":
        _upgrade_continuous()
        return
    for level, (_width, chunk) in LEVELS.items():
        op.execute(
            f"""
            CREATE TABLE rollup_{level} (
            bucket       timestamptz NOT NULL,
            turbine_id   text NOT NULL,
            n            bigint NOT NULL CHECK (n > 0),
            n_available  bigint NOT NULL,
            {_columns()},
            CONSTRAINT pk_rollup_{level} PRIMARY KEY (turbine_id, bucket)
            )
            """
        )
        op.execute(
            f"SELECT create_hypertable('rollup_{level}', by_range('bucket', INTERVAL '{chunk}'))"
        )
        op.execute(f"CREATE INDEX ix_rollup_{level}_bucket ON rollup_{level} (bucket)")
        op.execute(_stats_view(level))


def downgrade() -> None:
    continuous = _license() == "timescale"
    for level in reversed(LEVELS):
        op.execute(f"DROP VIEW rollup_{level}_stats")
        if continuous:
            op.execute(f"DROP MATERIALIZED VIEW rollup_{level}")
        else:
            op.execute(f"DROP TABLE rollup_{level}")
