"""Benchmark of the simulator: readings per CPU-second, and backfill rows per second.

    .venv/bin/python bench/bench_generator.py [--days 30] [--skip-backfill]

1. The generator's work for 1000 turbines at 1 Hz (physics, fault injection, payload
   encoding), in readings per CPU-second of this one process (time.process_time). The
   ceiling to beat: 1000 readings per CPU-second, i.e. 1000 turbines at 1 Hz on less
   than one core.
2. A backfill of 10 turbines x 1 Hz x 30 days into the bench's own database
   (windpark_bench_generator, built by the real migrations), with the binary COPY
   that ``windpark.simulation.backfill`` uses, and, on one day, the same rows through
   ``copy_records_to_table`` for comparison. It writes under turbine ids BENCH-WTGnn
   in 2001 and deletes its rows afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from datetime import UTC, datetime, timedelta

import asyncpg
import numpy as np

from windpark import migrate
from windpark.bootstrap import SetupSettings, ensure_database
from windpark.settings import DatabaseSettings
from windpark.simulation import FaultMix, ParkSimulator, SimTurbine
from windpark.simulation.backfill import COLUMNS, SOURCE, TABLE, backfill
from windpark.simulation.park import ReadingBlock, from_ms
from windpark.simulation.turbine import STATES
from windpark.turbine_model import DEFAULT_MODEL, load_model

# The bench's own database, built by the real migrations (never the one `make run` uses).
BENCH_DATABASE = "windpark_bench_generator"
BENCH_START = datetime(2001, 1, 1, tzinfo=UTC)


def bench_generator(turbines: int, seconds: int, error_rate: float) -> float:
    model = load_model(DEFAULT_MODEL)
    sim = ParkSimulator(
        turbines=[SimTurbine(turbine_id=f"WTG{i:04d}", model=model) for i in range(turbines)],
        seed=42,
        error_rate=error_rate,
        fault_mix=FaultMix.default(),
        interval_s=1.0,
    )
    start = datetime.now(UTC).replace(microsecond=0)
    sim.step(start)  # warm-up: caches, first allocation
    readings = 0
    cpu = time.process_time()
    for k in range(1, seconds + 1):
        sim.step(start + timedelta(seconds=k))
        readings += turbines
    cpu = time.process_time() - cpu
    rate = readings / cpu
    print(
        f"generator: {turbines} turbines, error_rate {error_rate}: {readings} readings in "
        f"{cpu:.2f} CPU-s = {rate:,.0f} readings per CPU-second "
        f"(1 Hz needs {turbines / rate:.1%} of a core)"
    )
    return rate


def _records(block: ReadingBlock, received_at: datetime) -> list[tuple[object, ...]]:
    """The block as the tuples ``copy_records_to_table`` wants (the slower way)."""
    times = [from_ms(ms) for ms in block.ts_ms.tolist()]
    columns = [
        getattr(block, name).tolist()
        for name in (
            "seq",
            "power_kw",
            "wind_speed_ms",
            "temperature_c",
            "rotor_rpm",
            "pitch_deg",
            "nacelle_temperature_c",
            "wind_direction_deg",
        )
    ]
    states = block.state.tolist()
    setpoints = block.setpoint_kw.tolist()
    records: list[tuple[object, ...]] = []
    for t, ts in enumerate(times):
        for i, turbine_id in enumerate(block.turbine_ids):
            seq, power, wind, temp, rpm, pitch, nacelle, direction = (c[t][i] for c in columns)
            setpoint = setpoints[t][i]
            records.append(
                (
                    ts,
                    turbine_id,
                    seq,
                    power,
                    wind,
                    temp,
                    str(STATES[states[t][i]]),
                    rpm,
                    pitch,
                    nacelle,
                    direction,
                    None if np.isnan(setpoint) else setpoint,
                    0,
                    SOURCE,
                    received_at,
                )
            )
    return records


async def _prepare(conn: asyncpg.Connection, ids: list[str]) -> None:
    model = load_model(DEFAULT_MODEL)
    await conn.executemany(
        "INSERT INTO turbines (turbine_id, name, model, rated_power_kw) VALUES ($1, $1, $2, $3)"
        " ON CONFLICT (turbine_id) DO NOTHING",
        [(t, model.name, model.rated_power_kw) for t in ids],
    )
    await _clean(conn, ids)


async def _clean(conn: asyncpg.Connection, ids: list[str]) -> None:
    await conn.execute("DELETE FROM readings WHERE turbine_id = ANY($1::text[])", ids)


def _sim(ids: list[str]) -> ParkSimulator:
    model = load_model(DEFAULT_MODEL)
    return ParkSimulator(
        turbines=[SimTurbine(turbine_id=t, model=model) for t in ids], seed=42, interval_s=1.0
    )


async def bench_database() -> str:
    """The bench database at the head migration (created on first use)."""
    settings = SetupSettings(db=DatabaseSettings(name=BENCH_DATABASE), park_size=0)
    await ensure_database(settings)
    await asyncio.to_thread(migrate.upgrade, settings.db)
    return settings.db.dsn()


async def bench_backfill(turbines: int, days: float, compare_days: float) -> None:
    dsn = await bench_database()
    ids = [f"BENCH-WTG{i:02d}" for i in range(1, turbines + 1)]
    conn = await asyncpg.connect(dsn)
    try:
        await _prepare(conn, ids)

        if compare_days > 0:
            end = BENCH_START + timedelta(days=compare_days)
            steps = round(compare_days * 86400)
            sim = _sim(ids)
            wall, cpu = time.perf_counter(), time.process_time()
            rows = 0
            for first in range(0, steps, 10_000):
                block = sim.simulate_block(
                    BENCH_START + timedelta(seconds=first), min(10_000, steps - first), 1.0
                )
                records = _records(block, datetime.now(UTC))
                await conn.copy_records_to_table(TABLE, records=records, columns=list(COLUMNS))
                rows += len(records)
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            print(
                f"copy_records_to_table: {rows} rows in {wall:.1f} s = {rows / wall:,.0f} rows/s"
                f" (client CPU {cpu:.1f} s)"
            )
            await _clean(conn, ids)

            wall, cpu = time.perf_counter(), time.process_time()
            rows = await backfill(conn, _sim(ids), BENCH_START, end, interval_s=1.0)
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            print(
                f"binary COPY (backfill): {rows} rows in {wall:.1f} s = {rows / wall:,.0f} rows/s"
                f" (client CPU {cpu:.1f} s)"
            )
            await _clean(conn, ids)

        end = BENCH_START + timedelta(days=days)
        last_report = [0.0]

        def progress(done: int, total: int) -> None:
            now = time.perf_counter()
            if now - last_report[0] > 10:
                last_report[0] = now
                print(f"  {done:,} / {total:,} rows")

        wall, cpu = time.perf_counter(), time.process_time()
        rows = await backfill(conn, _sim(ids), BENCH_START, end, interval_s=1.0, progress=progress)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        count = await conn.fetchval(
            "SELECT count(*) FROM readings WHERE turbine_id = ANY($1::text[])", ids
        )
        print(
            f"backfill: {turbines} turbines x 1 Hz x {days:g} days: {rows:,} rows "
            f"({count:,} in the table) in {wall:.1f} s = {rows / wall:,.0f} rows/s "
            f"(client CPU {cpu:.1f} s)"
        )
        await _clean(conn, ids)
    finally:
        await conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--turbines", type=int, default=1000)
    parser.add_argument("--seconds", type=int, default=30)
    parser.add_argument("--days", type=float, default=30.0)
    parser.add_argument("--backfill-turbines", type=int, default=10)
    parser.add_argument("--compare-days", type=float, default=1.0)
    parser.add_argument("--skip-backfill", action="store_true")
    args = parser.parse_args()
    for error_rate in (0.0, 0.2):
        bench_generator(args.turbines, args.seconds, error_rate)
    if not args.skip_backfill:
        asyncio.run(bench_backfill(args.backfill_turbines, args.days, args.compare_days))


if __name__ == "__main__":
    main()
