"""Rollups: per-turbine statistics at 1 minute, 10 minutes, 1 hour and 1 day.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28

Each rollup keeps sums, not means: count, sum, sum of squares, min and max per
channel. Sums add up exactly when late readings arrive in a bucket that already
has rows, and coarser buckets are sums of finer ones; mean and standard
deviation are derived when read (see the ``*_stats`` views).

Engine: on the Apache edition of TimescaleDB (Debian's build) these are
hypertables that windpark upserts in the same transaction as the raw readings,
so they are exact and current at commit. The relation names and columns are the
contract that the API and psql users rely on.
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


def upgrade() -> None:
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
    for level in reversed(LEVELS):
        op.execute(f"DROP VIEW rollup_{level}_stats")
        op.execute(f"DROP TABLE rollup_{level}")
