"""Write-side cost of the ingest transaction: time per ``write_batch`` of live readings.

    .venv/bin/python bench/bench_ingest_batches.py [--batches 60] [--batch 1000]
        [--turbines 10] [--max-seconds 60]

Ten turbines of the park simulator (``windpark.simulation``, seed 42, 1 Hz), batches of
``--batch`` readings (every turbine's next readings, one second apart, in the order a
concentrator receives them), ending now, written as the concentrator writes them: one
``windpark.storage.write_batch`` each (holds, rollups, latest values, park step).

The ceiling, in the same run and on the same rows: a bare
``INSERT INTO ceiling_readings SELECT * FROM unnest(...) ON CONFLICT DO NOTHING`` into a
hypertable shaped like ``readings`` (its columns, checks, indexes and foreign key, the
same 1-day chunks) with none of windpark's logic (no holds, no rollups, no latest values,
no park step). Each batch is written both ways, alternating which goes first, so both see
the same machine. Printed: p50/p95 per batch, readings/s, and write_batch's share of the
ceiling. No timed assertions: the numbers vary with the VM.

Everything happens in a scratch database of its own (``windpark_bench_ingest_<random>``),
built by the real migrations and dropped at the end; ``windpark``, ``windpark_test`` and
the tests' ``windpark_test_*`` databases are never opened.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import asyncpg

from windpark import migrate, registry, rollups
from windpark.bootstrap import SetupSettings, drop_database, ensure_database
from windpark.simulation import ParkSimulator, SimTurbine
from windpark.storage import READING_COLUMNS, AcceptedReading, write_batch
from windpark.turbine_model import DEFAULT_MODEL, load_model

CEILING_TABLE = "ceiling_readings"
_TYPES = {
    "ts": "timestamptz",
    "turbine_id": "text",
    "seq": "int8",
    "state": "text",
    "quality_flags": "int4",
    "source": "text",
    "received_at": "timestamptz",
}
_unnest_args = ", ".join(
    f"${i}::{_TYPES.get(c, 'float8')}[]" for i, c in enumerate(READING_COLUMNS, start=1)
)
CEILING_SQL = (
    f"INSERT INTO {CEILING_TABLE} ({', '.join(READING_COLUMNS)})"
    f" SELECT * FROM unnest({_unnest_args}) ON CONFLICT DO NOTHING"
)
# readings' columns, checks and indexes (LIKE), its foreign key, its chunking (0001).
CEILING_DDL = (
    f"CREATE TABLE {CEILING_TABLE} (LIKE readings INCLUDING ALL)",
    f"ALTER TABLE {CEILING_TABLE} ADD FOREIGN KEY (turbine_id) REFERENCES turbines (turbine_id)",
    f"SELECT create_hypertable('{CEILING_TABLE}', by_range('ts', INTERVAL '1 day'))",
)


def scratch_settings() -> SetupSettings:
    """The environment's server and role, and a database name of the bench's own."""
    base = SetupSettings(park_size=0)
    name = f"windpark_bench_ingest_{uuid.uuid4().hex[:8]}"
    return base.model_copy(update={"db": base.db.model_copy(update={"name": name})})


def live_batches(
    ids: list[str], batches: int, per_turbine: int, end: datetime
) -> list[list[AcceptedReading]]:
    """Simulated readings of ``ids`` at 1 Hz up to ``end``, cut into batches."""
    model = load_model(DEFAULT_MODEL)
    sim = ParkSimulator([SimTurbine(turbine_id=t, model=model) for t in ids], seed=42)
    start = end - timedelta(seconds=batches * per_turbine)
    out = []
    for b in range(batches):
        block = sim.simulate_block(start + timedelta(seconds=b * per_turbine), per_turbine, 1.0)
        received = datetime.now(UTC)
        out.append(
            [
                AcceptedReading(
                    reading=r,
                    quality_flags=0,
                    source="amqp",
                    received_at=received,
                    dedup_key=f"bench:{r.turbine_id}:{r.seq}",
                )
                for r in block.readings()
            ]
        )
    return out


def columns(batch: Sequence[AcceptedReading]) -> list[list[object]]:
    """The batch as one list per column of READING_COLUMNS (what unnest takes)."""
    rows = [
        (
            a.reading.ts,
            a.reading.turbine_id,
            a.reading.seq,
            a.reading.power_kw,
            a.reading.wind_speed_ms,
            a.reading.temperature_c,
            str(a.reading.state),
            a.reading.rotor_rpm,
            a.reading.pitch_deg,
            a.reading.nacelle_temperature_c,
            a.reading.wind_direction_deg,
            a.reading.setpoint_kw,
            a.quality_flags,
            a.source,
            a.received_at,
        )
        for a in batch
    ]
    return [list(c) for c in zip(*rows, strict=True)]


def percentile(samples: Sequence[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def summary(label: str, seconds: Sequence[float], batch: int) -> str:
    ms = [s * 1000 for s in seconds]
    return (
        f"{label:34s} p50 {statistics.median(ms):7.1f} ms  p95 {percentile(ms, 0.95):7.1f} ms"
        f"  {batch / statistics.median(seconds):>9,.0f} readings/s at p50"
        f"  {batch * len(seconds) / sum(seconds):>9,.0f} readings/s overall"
    )


async def run(
    dsn: str, *, batches: int, batch: int, turbines: int, warmup: int, max_seconds: float
) -> tuple[str, list[float], list[float]]:
    conn = await asyncpg.connect(dsn)
    try:
        ids = registry.park_turbine_ids(turbines)
        for t in ids:
            await registry.add_turbine(conn, t, model=DEFAULT_MODEL)
        for statement in CEILING_DDL:
            await conn.execute(statement)
        engine = await rollups.engine(conn)
        per_turbine = batch // turbines
        end = datetime.now(UTC).replace(microsecond=0)
        work = live_batches(ids, warmup + batches, per_turbine, end)

        async def ingest(items: list[AcceptedReading]) -> float:
            began = time.perf_counter()
            result = await write_batch(conn, items, [], rollup_engine=engine)
            elapsed = time.perf_counter() - began
            if result.stored != len(items):  # a check of the run, not of the timing
                raise RuntimeError(f"write_batch stored {result.stored} of {len(items)}")
            return elapsed

        async def ceiling(items: list[AcceptedReading]) -> float:
            began = time.perf_counter()
            status = await conn.execute(CEILING_SQL, *columns(items))
            elapsed = time.perf_counter() - began
            if status != f"INSERT 0 {len(items)}":
                raise RuntimeError(f"ceiling insert: {status}")
            return elapsed

        ingest_s: list[float] = []
        ceiling_s: list[float] = []
        deadline = time.monotonic() + max_seconds
        for b, items in enumerate(work):
            if b > warmup and time.monotonic() > deadline:  # at least one measured
                print(f"time budget of {max_seconds:g} s reached after {b - warmup} batches")
                break
            if b % 2 == 0:
                ingest_t = await ingest(items)
                ceiling_t = await ceiling(items)
            else:
                ceiling_t = await ceiling(items)
                ingest_t = await ingest(items)
            if b >= warmup:  # the first batches warm plans, caches and the first chunk
                ingest_s.append(ingest_t)
                ceiling_s.append(ceiling_t)
        return engine, ingest_s, ceiling_s
    finally:
        await conn.close()


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=60, help="measured batches")
    parser.add_argument("--batch", type=int, default=1000, help="readings per batch")
    parser.add_argument("--turbines", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=5, help="batches written, not counted")
    parser.add_argument(
        "--max-seconds", type=float, default=60, help="stop measuring after this long"
    )
    args = parser.parse_args()
    if args.batches < 1 or args.batch < args.turbines or args.turbines < 1:
        parser.error("need --batches >= 1 and --batch >= --turbines >= 1")
    batch = args.batch // args.turbines * args.turbines

    settings = scratch_settings()
    started = time.monotonic()
    try:
        await ensure_database(settings)
        await asyncio.to_thread(migrate.upgrade, settings.db)
        engine, ingest_s, ceiling_s = await run(
            settings.db.dsn(),
            batches=args.batches,
            batch=batch,
            turbines=args.turbines,
            warmup=args.warmup,
            max_seconds=args.max_seconds,
        )
    finally:
        await drop_database(settings)
    p50_ratio = statistics.median(ingest_s) / statistics.median(ceiling_s)
    overall_ratio = sum(ceiling_s) / sum(ingest_s)
    print(
        f"{len(ingest_s)} batches of {batch} readings ({args.turbines} turbines x"
        f" {batch // args.turbines} s), after {args.warmup} warm-up; rollup engine {engine};"
        f" scratch database {settings.db.name} (dropped), {time.monotonic() - started:.0f} s"
    )
    print(summary("write_batch (ingest transaction)", ingest_s, batch))
    print(summary("ceiling: bare INSERT ... unnest", ceiling_s, batch))
    print(
        f"ratio: write_batch p50 is {p50_ratio:.1f}x the ceiling's;"
        f" overall throughput {overall_ratio:.0%} of the ceiling"
    )
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
