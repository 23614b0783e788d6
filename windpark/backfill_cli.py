"""``windpark backfill --days N``: simulated history for the registered park, via COPY.

The history ends where the stored data begins (the oldest reading of those
turbines, or now when there is none), so it never collides with live readings, and a
second backfill extends the history further back; then the rollups of that range are
rebuilt from the raw rows. An explicit ``--end`` whose range holds stored readings is
refused before anything is written (COPY would abort on the first of them).
"""

from __future__ import annotations

import sys
import time
from datetime import UTC, datetime, timedelta

import asyncpg
from pydantic import Field

from windpark import registry, rollups
from windpark.bootstrap import PARK_HOLD_INTERVALS
from windpark.settings import DatabaseSettings, WindparkSettings
from windpark.simulation import ParkSimulator, SimTurbine, Site
from windpark.simulation.backfill import backfill


class BackfillSettings(WindparkSettings):
    db: DatabaseSettings = DatabaseSettings()
    seed: int = 20261128
    site_mean_wind_ms: float = Field(default=7.5, gt=0)


class ProgressBar:
    def __init__(self, width: int = 40, unit: str = "rows") -> None:
        self.width = width
        self.unit = unit
        self.started = time.monotonic()

    def __call__(self, done: int, total: int) -> None:
        share = done / total if total else 1.0
        elapsed = time.monotonic() - self.started
        rate = done / elapsed if elapsed > 0 else 0.0
        bar = "#" * int(share * self.width)
        sys.stderr.write(
            f"\r[{bar:<{self.width}}] {share:6.1%} {done:,}/{total:,} {self.unit}"
            f" {rate:,.{0 if rate >= 10 else 2}f} {self.unit}/s"
        )
        if done >= total:
            sys.stderr.write("\n")
        sys.stderr.flush()


async def _stored_range(
    conn: asyncpg.Connection, turbine_ids: list[str], start: datetime, end: datetime
) -> tuple[datetime, datetime] | None:
    """The first and last stored reading of these turbines in [start, end), if any."""
    row = await conn.fetchrow(
        "SELECT min(ts) AS first, max(ts) AS last FROM readings"
        " WHERE turbine_id = ANY($1::text[]) AND ts >= $2 AND ts < $3",
        turbine_ids,
        start,
        end,
    )
    if row is None or row["first"] is None:
        return None
    return row["first"], row["last"]


async def run_backfill(*, days: float, interval_s: float, seed: int | None, end: str | None) -> int:
    settings = BackfillSettings()
    conn = await asyncpg.connect(settings.db.dsn())
    try:
        park = await registry.load_registry(conn)
        if not park:
            print("windpark: no turbines registered; run `windpark setup` first", file=sys.stderr)
            return 1
        if end is not None:
            try:
                until = datetime.fromisoformat(end)
            except ValueError:
                print(f"windpark: --end {end!r} is not an RFC 3339 time", file=sys.stderr)
                return 2
            if until.tzinfo is None:
                print("windpark: --end needs a UTC offset", file=sys.stderr)
                return 2
            print(f"the history ends at --end {until.isoformat()}", file=sys.stderr)
        else:
            oldest = await conn.fetchval(
                "SELECT min(ts) FROM readings WHERE turbine_id = ANY($1::text[])", list(park)
            )
            if oldest is None:
                until = datetime.now(UTC)
                print("no readings stored yet: the history ends now", file=sys.stderr)
            else:
                until = oldest
                print(
                    f"readings are stored from {oldest.isoformat()}: the history ends just"
                    " before them (each backfill extends it further back)",
                    file=sys.stderr,
                )
        # Whole intervals, so the history lines up with the live readings' grid.
        until = datetime.fromtimestamp((until.timestamp() // interval_s) * interval_s, tz=UTC)
        start = until - timedelta(days=days)
        stored = await _stored_range(conn, list(park), start, until)
        if stored is not None:
            print(
                f"windpark: readings are stored between {stored[0].isoformat()} and"
                f" {stored[1].isoformat()}, inside the range asked for; omit --end (the"
                " history then ends before the oldest stored reading) or choose an"
                " earlier one",
                file=sys.stderr,
            )
            return 2
        max_hold_s = await rollups.max_holds(conn, list(park))
        too_short = sorted(t for t, hold in max_hold_s.items() if interval_s > hold)
        if too_short:
            # Each reading would stand for only its max hold of the interval: energy and
            # coverage would come out short, without a word.
            first = too_short[0]
            print(
                f"windpark: --interval {interval_s:g} s is longer than the max hold of"
                f" {', '.join(too_short)} ({max_hold_s[first]:g} s): their energy and coverage"
                f" would count only {max_hold_s[first]:g} s of every {interval_s:g} s. Raise"
                f" it first, e.g. `windpark turbines set {first} --max-hold-s"
                f" {PARK_HOLD_INTERVALS * interval_s:g}`, or backfill at a shorter --interval",
                file=sys.stderr,
            )
            return 2
        simulator = ParkSimulator(
            [SimTurbine(turbine_id=t.turbine_id, model=t.model) for t in park.values()],
            Site(mean_wind_ms=settings.site_mean_wind_ms),
            seed=seed if seed is not None else settings.seed,
            interval_s=interval_s,
        )
        print(
            f"backfilling {len(park)} turbines from {start.isoformat()} to {until.isoformat()}"
            f" every {interval_s:g} s",
            file=sys.stderr,
        )
        started = time.monotonic()
        rows = await backfill(
            conn,
            simulator,
            start,
            until,
            interval_s=interval_s,
            progress=ProgressBar(),
            max_hold_s=max_hold_s,
        )
        copied = time.monotonic() - started
        print("rebuilding the rollups of that range", file=sys.stderr)
        await rollups.rebuild(conn, start, until, list(park), progress=ProgressBar(unit="days"))
        total = time.monotonic() - started
    finally:
        await conn.close()
    print(
        f"{rows:,} readings in {copied:.1f} s ({rows / max(copied, 1e-9):,.0f} rows/s);"
        f" with rollups {total:.1f} s"
    )
    return 0
