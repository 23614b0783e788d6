"""Energy measured from the readings received: each held until the next, capped; coverage.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02

Until now energy was extrapolated: a bucket's mean power times its hours, so one
reading of 1180 kW made a whole day of 28 320 kWh. Now:

- ``turbines.max_hold_s`` (default 3 s: three times the generators' 1 s reading
  interval) is the longest time a reading of that turbine may stand for;
- ``readings.held_s`` is the time a reading holds its power: until the turbine's next
  reading, at most ``max_hold_s``, and 0 while it is the newest. The ingest
  transaction sets it, and changes its predecessor's (windpark/storage.py);
  ``windpark.rollups.rebuild`` sets it for rows written by COPY;
- every rollup, per turbine and per park, carries ``energy_kwh`` (sum of power x
  hold) and ``covered_s`` (sum of holds): plain sums, so late readings and coarser
  levels add up as the other sums do, on both engines. A hold counts whole in the
  bucket of the reading that starts it;
- the ``turbine_stats_*`` and ``park_stats_*`` views show that energy, the time
  covered, the coverage (covered time over the bucket's elapsed time) and a capacity
  factor over the bucket's elapsed time: a gap lowers them, it is never filled.

Apache: columns added to the rollup tables and filled from the readings that are
still stored (buckets whose raw rows retention dropped keep 0 kWh, 0 s covered:
unknown, and shown as uncovered). Community license: a continuous aggregate cannot
gain a column, so the eight aggregates (and their stats views and policies) are
dropped and created again with the new sums, then (after the commit of the rest,
since a refresh cannot run in a transaction) refreshed over the whole range of the raw
readings still stored: their policies reach back only 8-10 days, and a bucket older than
that would otherwise read as empty. Buckets older than the oldest stored raw reading
(retention dropped their rows: the aggregates are their only copy) cannot be rebuilt, so
before dropping anything the migration refuses to run while any aggregate holds a bucket
that ends at or before the oldest raw reading, unless WINDPARK_MIGRATE_ALLOW_ROLLUP_LOSS=1
is set (that history is then lost). Retention drops whole 1-day chunks, so the bucket of
the oldest raw reading is rebuilt whole. The downgrade does the same. Should a refresh
fail, the schema is at 0007 but its version row is not: the aggregates must then be
refreshed by hand (``rollups.refresh_continuous``). Stop the concentrators while this
runs, as for 0005.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType

from alembic import op

log = logging.getLogger("windpark.migrate")

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

DEFAULT_MAX_HOLD_S = 3.0

# bucket name -> (bucket width, seconds), as 0002's levels.
LEVELS = {
    "1m": ("1 minute", 60),
    "10m": ("10 minutes", 600),
    "1h": ("1 hour", 3600),
    "1d": ("1 day", 86400),
}
# The energy sums of a group of readings, and of a group of rollup rows
# (windpark.rollups.ENERGY_EXPRESSIONS; a test compares them).
ENERGY_FROM_READINGS = "sum(power_kw * held_s) / 3600.0 AS energy_kwh, sum(held_s) AS covered_s"
ENERGY_FROM_ROLLUPS = "sum(energy_kwh) AS energy_kwh, sum(covered_s) AS covered_s"

# Every reading's hold from the stored readings (windpark.rollups.hold_s_sql).
HOLDS_SQL = """
UPDATE readings r SET held_s = h.held_s
FROM (
    SELECT x.turbine_id, x.ts,
           CASE WHEN x.next_ts IS NULL THEN 0.0
                ELSE least(extract(epoch FROM x.next_ts - x.ts)::float8, t.max_hold_s) END
               AS held_s
    FROM (SELECT turbine_id, ts, lead(ts) OVER (PARTITION BY turbine_id ORDER BY ts) AS next_ts
          FROM readings) x
    JOIN turbines t USING (turbine_id)
) h
WHERE r.turbine_id = h.turbine_id AND r.ts = h.ts AND r.held_s <> h.held_s
"""


def _with_energy(select: str, energy: str) -> str:
    """An earlier migration's aggregate SELECT, with the energy sums after its columns."""
    columns, from_clause = select.split(" FROM ", 1)
    return f"{columns}, {energy} FROM {from_clause}"


def cagg_select(level: str, source: str | None) -> str:
    """The per-turbine continuous aggregate of ``level``: 0002's, with the energy sums."""
    energy = ENERGY_FROM_READINGS if source is None else ENERGY_FROM_ROLLUPS
    return _with_energy(_migration("0002_rollups")._cagg_select(level, source), energy)


def park_select(level: str) -> str:
    """The park continuous aggregate of ``level``: 0005's, with the energy sums."""
    return _with_energy(_migration("0005_park_rollups").park_select(level), ENERGY_FROM_ROLLUPS)


def _elapsed_s(seconds: int, bucket: str) -> str:
    # The bucket's elapsed part: all of it once ended, up to now while it runs.
    return f"greatest(least(extract(epoch FROM now() - {bucket})::float8, {seconds}), 0)"


def turbine_stats_view(level: str) -> str:
    seconds = LEVELS[level][1]
    elapsed = _elapsed_s(seconds, "s.bucket")
    return f"""
        CREATE VIEW turbine_stats_{level} AS
        SELECT s.*, r.energy_kwh, r.covered_s,
               least(r.covered_s / nullif({elapsed}, 0), 1.0) AS coverage,
               r.energy_kwh / nullif(t.rated_power_kw * {elapsed} / 3600.0, 0)
                   AS capacity_factor,
               s.n_available::double precision / s.n AS availability
        FROM rollup_{level}_stats s
        JOIN rollup_{level} r USING (turbine_id, bucket)
        JOIN turbines t USING (turbine_id)
        """


def park_stats_view(level: str) -> str:
    seconds = LEVELS[level][1]
    elapsed = _elapsed_s(seconds, "r.bucket")
    # Coverage and capacity factor over every registered turbine: one that sent nothing
    # in the bucket is a gap of the park's, not a turbine left out.
    return f"""
        CREATE VIEW park_stats_{level} AS
        SELECT r.bucket,
               count(*) AS turbines_reporting,
               sum(r.n) AS n,
               sum(r.power_sum) / sum(r.n) AS park_mean_power_kw,
               sum(r.power_sum / r.n) AS park_total_power_kw,
               sum(r.energy_kwh) AS energy_kwh,
               sum(r.covered_s) AS covered_s,
               least(sum(r.covered_s) / nullif(p.turbines * {elapsed}, 0), 1.0) AS coverage,
               sum(r.energy_kwh) / nullif(p.rated_power_kw * {elapsed} / 3600.0, 0)
                   AS capacity_factor,
               sum(r.n_available)::double precision / sum(r.n) AS availability,
               sum(r.wind_sum) / sum(r.n) AS wind_speed_avg_ms,
               sum(r.temp_sum) / sum(r.n) AS temperature_avg_c
        FROM rollup_{level} r
        CROSS JOIN (SELECT count(*) AS turbines, sum(rated_power_kw) AS rated_power_kw
                    FROM turbines) p
        GROUP BY r.bucket, p.turbines, p.rated_power_kw
        """


def _migration(stem: str) -> ModuleType:
    """An earlier migration of this chain, for the definitions this one replaces."""
    path = Path(__file__).with_name(f"{stem}.py")
    spec = importlib.util.spec_from_file_location(f"migration_{stem}", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _license() -> str:
    return str(op.get_bind().exec_driver_sql("SHOW timescaledb.license").scalar())


def _grant(names: list[str]) -> None:
    _migration("0005_park_rollups")._grant(names)


def _drop_stats_views() -> None:
    for level in reversed(LEVELS):
        op.execute(f"DROP VIEW park_stats_{level}")
        op.execute(f"DROP VIEW turbine_stats_{level}")


def _create_stats_views(
    turbine_view: Callable[[str], str], park_view: Callable[[str], str]
) -> None:
    for level in LEVELS:
        op.execute(turbine_view(level))
        op.execute(park_view(level))
    _grant([f"{kind}_stats_{level}" for level in LEVELS for kind in ("turbine", "park")])


def _recreate_continuous(
    rollup_select: Callable[[str, str | None], str], park: Callable[[str], str]
) -> None:
    """Drop the eight continuous aggregates (and what reads them) and create them from
    the given definitions, with 0002's and 0005's policies and 0002's stats views."""
    rollups, parks = _migration("0002_rollups"), _migration("0005_park_rollups")
    for level in reversed(LEVELS):
        op.execute(f"DROP MATERIALIZED VIEW park_rollup_{level}")
        op.execute(f"DROP VIEW rollup_{level}_stats")
        op.execute(f"DROP MATERIALIZED VIEW rollup_{level}")
    source = None
    for level in LEVELS:
        # Finest first: each level reads the one below, the park level its own width.
        for name, select, policy in (
            (f"rollup_{level}", rollup_select(level, source), rollups.POLICIES[level]),
            (f"park_rollup_{level}", park(level), parks.POLICIES[level]),
        ):
            op.execute(continuous_aggregate_sql(name, select))
            op.execute(continuous_policy_sql(name, *policy))
        op.execute(rollups._stats_view(level))
        source = f"rollup_{level}"
    _grant([f"{kind}_{level}" for level in LEVELS for kind in ("rollup", "park_rollup")])
    _grant([f"rollup_{level}_stats" for level in LEVELS])


def continuous_aggregate_sql(name: str, select: str) -> str:
    # WITH NO DATA: WITH DATA cannot run in the migration's transaction; the migration
    # refreshes them at its end (``_refresh_recreated``).
    return (
        f"CREATE MATERIALIZED VIEW {name} WITH (timescaledb.continuous, "
        f"timescaledb.materialized_only = false) AS {select} WITH NO DATA"
    )


def continuous_policy_sql(name: str, start: str, end: str, every: str) -> str:
    return (
        f"SELECT add_continuous_aggregate_policy('{name}', "
        f"start_offset => INTERVAL '{start}', end_offset => INTERVAL '{end}', "
        f"schedule_interval => INTERVAL '{every}')"
    )


# Community license only: the rollup history the aggregates hold beyond the raw readings.
ALLOW_ROLLUP_LOSS_ENV = "WINDPARK_MIGRATE_ALLOW_ROLLUP_LOSS"


def lost_buckets_sql() -> str:
    """(view, oldest bucket) of every aggregate holding buckets that end at or before the
    oldest stored raw reading (any bucket when none is stored): history a refresh cannot
    rebuild. Buckets after an aggregate's watermark come from the raw readings (real-time
    aggregation), so they never match."""
    parts = [
        f"SELECT '{view}' AS view, min(bucket) AS oldest FROM {view}"
        f" WHERE bucket + INTERVAL '{width}'"
        " <= (SELECT coalesce(min(ts), 'infinity') FROM readings)"
        for level, (width, _seconds) in LEVELS.items()
        for view in (f"rollup_{level}", f"park_rollup_{level}")
    ]
    union = "\nUNION ALL ".join(parts)
    return f"SELECT * FROM ({union}) v WHERE oldest IS NOT NULL"


# The range of the raw readings stored, and the database's clock.
RAW_RANGE_SQL = "SELECT min(ts) AS first, max(ts) AS last, now() AS now FROM readings"


def refresh_sql(view: str, start: str, end: str) -> str:
    """A refresh of ``view`` over [start, end) given as placeholders; its window arguments
    are of type "any", so they are cast (an untyped parameter cannot be planned)."""
    return f"CALL refresh_continuous_aggregate('{view}', {start}::timestamptz, {end}::timestamptz)"


def _floor(t: datetime, seconds: int) -> datetime:
    # time_bucket without zone or origin: UTC-aligned (windpark.rollups.floor_bucket).
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    width = timedelta(seconds=seconds)
    return epoch + (t - epoch) // width * width


def refresh_windows(
    first: datetime, last: datetime, now: datetime
) -> list[tuple[str, datetime, datetime]]:
    """(level, start, end) to refresh, finest first, so every bucket holding a stored
    reading is materialized (windpark.rollups.refresh_windows, as of this revision):
    whole UTC days at every level, since each level is computed from the one below;
    each ending at its level's current bucket, which real-time aggregation serves."""
    day_s = LEVELS["1d"][1]
    start = _floor(first, day_s)
    end = _floor(last, day_s) + timedelta(seconds=day_s)
    windows = []
    for level, (_width, seconds) in LEVELS.items():
        level_end = min(end, _floor(now, seconds))
        if start < level_end:
            windows.append((level, start, level_end))
    return windows


def _refuse_rollup_loss() -> None:
    """Before the aggregates are dropped: stop if they hold history the raw readings
    cannot give back, unless the operator accepts its loss."""
    lost = op.get_bind().exec_driver_sql(lost_buckets_sql()).all()
    if not lost:
        return
    found = ", ".join(f"{view} from {oldest.isoformat()}" for view, oldest in lost)
    if os.environ.get(ALLOW_ROLLUP_LOSS_ENV) == "1":
        log.warning("dropping rollup history older than the raw readings: %s", found)
        return
    raise RuntimeError(
        "migration 0007 recreates the continuous aggregates from the raw readings, but they"
        f" hold buckets older than the oldest stored raw reading ({found}): that history"
        " would be lost. Export it first if it is needed, then run the migration again with"
        f" {ALLOW_ROLLUP_LOSS_ENV}=1 to accept its loss."
    )


def _refresh_recreated() -> None:
    """Materialize the recreated aggregates over every stored raw reading: outside the
    migration's transaction (TimescaleDB refuses one), finest level first, each park
    aggregate after the per-turbine one it reads."""
    bind = op.get_bind()
    first, last, now = bind.exec_driver_sql(RAW_RANGE_SQL).one()
    if first is None:
        return
    with op.get_context().autocommit_block():
        for level, start, end in refresh_windows(first, last, now):
            for view in (f"rollup_{level}", f"park_rollup_{level}"):
                log.info("refreshing %s over [%s, %s)", view, start, end)
                bind.exec_driver_sql(
                    refresh_sql(view, "%(start)s", "%(end)s"), {"start": start, "end": end}
                )


def upgrade() -> None:
    op.execute(
        "ALTER TABLE turbines ADD COLUMN max_hold_s double precision NOT NULL"
        f" DEFAULT {DEFAULT_MAX_HOLD_S} CONSTRAINT ck_turbines_max_hold_s CHECK (max_hold_s > 0)"
    )
    # DEFAULT 0: rows written by COPY (backfill) hold nothing until rebuild settles them.
    op.execute("ALTER TABLE readings ADD COLUMN held_s double precision NOT NULL DEFAULT 0")
    # Apart: a column of a compressed hypertable (community license) cannot be added
    # with a constraint.
    op.execute("ALTER TABLE readings ADD CONSTRAINT ck_readings_held_s CHECK (held_s >= 0)")
    op.execute(HOLDS_SQL)
    community = _license() == "timescale"
    if community:
        _refuse_rollup_loss()
    _drop_stats_views()
    if community:
        _recreate_continuous(cagg_select, park_select)
    else:
        for level, (width, _seconds) in LEVELS.items():
            for table in (f"rollup_{level}", f"park_rollup_{level}"):
                op.execute(
                    f"ALTER TABLE {table} ADD COLUMN energy_kwh double precision NOT NULL"
                    " DEFAULT 0, ADD COLUMN covered_s double precision NOT NULL DEFAULT 0"
                )
            op.execute(
                f"""
                UPDATE rollup_{level} r SET energy_kwh = g.energy_kwh, covered_s = g.covered_s
                FROM (SELECT time_bucket(INTERVAL '{width}', ts) AS bucket, turbine_id,
                             {ENERGY_FROM_READINGS}
                      FROM readings GROUP BY 1, 2) g
                WHERE r.turbine_id = g.turbine_id AND r.bucket = g.bucket
                """
            )
            op.execute(
                f"""
                UPDATE park_rollup_{level} p SET energy_kwh = g.energy_kwh, covered_s = g.covered_s
                FROM (SELECT bucket, {ENERGY_FROM_ROLLUPS} FROM rollup_{level} GROUP BY 1) g
                WHERE p.bucket = g.bucket
                """
            )
            for table in (f"rollup_{level}", f"park_rollup_{level}"):
                # Every writer names them: no default hides one that does not.
                op.execute(
                    f"ALTER TABLE {table} ALTER COLUMN energy_kwh DROP DEFAULT,"
                    " ALTER COLUMN covered_s DROP DEFAULT"
                )
    _create_stats_views(turbine_stats_view, park_stats_view)
    if community:
        _refresh_recreated()  # last: it commits what came before


def downgrade() -> None:
    community = _license() == "timescale"
    if community:
        _refuse_rollup_loss()
    _drop_stats_views()
    if community:
        _recreate_continuous(_migration("0002_rollups")._cagg_select, _old_park_select)
    else:
        for level in reversed(LEVELS):
            for table in (f"park_rollup_{level}", f"rollup_{level}"):
                op.execute(f"ALTER TABLE {table} DROP COLUMN covered_s, DROP COLUMN energy_kwh")
    analytics = _migration("0003_analytics")
    _create_stats_views(analytics.turbine_stats_view, analytics.park_stats_view)
    op.execute("ALTER TABLE readings DROP COLUMN held_s")
    op.execute("ALTER TABLE turbines DROP COLUMN max_hold_s")
    if community:
        _refresh_recreated()  # last: it commits what came before


def _old_park_select(level: str) -> str:
    return str(_migration("0005_park_rollups").park_select(level))
