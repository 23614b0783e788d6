"""Write-side cost of the ingest transaction: time per ``write_batch`` of live readings.

Ten turbines, batches of ``--batch`` readings (every turbine's next readings, in order,
one second apart), as a concentrator writes them. Run against a scratch database that
the migrations created (the tests' one, for example)::

    WINDPARK_DB__NAME=windpark_test_x .venv/bin/python -m bench.bench_ingest_batches
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid
from datetime import UTC, datetime

import asyncpg

from tests.factories import accepted, make_series
from windpark import rollups
from windpark.settings import DatabaseSettings, WindparkSettings
from windpark.storage import write_batch


class _Settings(WindparkSettings):
    db: DatabaseSettings = DatabaseSettings()


async def _run(batches: int, batch_rows: int, turbines: int) -> list[float]:
    conn = await asyncpg.connect(_Settings().db.dsn())
    try:
        prefix = f"B{uuid.uuid4().hex[:6]}"
        ids = [f"{prefix}-{i}" for i in range(turbines)]
        await conn.executemany(
            "INSERT INTO turbines (turbine_id, name, model, rated_power_kw)"
            " VALUES ($1, $1, 'E-82/2300', 2300)",
            [(t,) for t in ids],
        )
        engine = await rollups.engine(conn)
        per_turbine = batch_rows // turbines
        start = datetime(2026, 5, 1, tzinfo=UTC)
        series = {t: make_series(t, start, batches * per_turbine) for t in ids}
        times = []
        for b in range(batches):
            lo, hi = b * per_turbine, (b + 1) * per_turbine
            batch = [accepted(r) for t in ids for r in series[t][lo:hi]]
            began = time.perf_counter()
            await write_batch(conn, batch, [], rollup_engine=engine)
            times.append(time.perf_counter() - began)
        return times
    finally:
        await conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=60)
    parser.add_argument("--batch", type=int, default=1000, help="readings per batch")
    parser.add_argument("--turbines", type=int, default=10)
    args = parser.parse_args()
    times = asyncio.run(_run(args.batches, args.batch, args.turbines))[5:]  # warm-up
    ms = sorted(t * 1000 for t in times)
    rate = args.batch / statistics.median(times)
    print(
        f"{len(ms)} batches of {args.batch}: p50 {statistics.median(ms):.1f} ms,"
        f" p90 {ms[int(len(ms) * 0.9)]:.1f} ms, {rate:,.0f} readings/s at p50"
    )


if __name__ == "__main__":
    main()
