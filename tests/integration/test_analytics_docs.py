"""docs/analytics.md's queries run as written, as the read-only analyst role."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest

from tests.factories import accepted, make_series
from windpark import registry
from windpark.bootstrap import SetupSettings
from windpark.storage import write_batch

DOC = Path(__file__).resolve().parents[2] / "docs" / "analytics.md"
QUERIES = re.findall(r"```sql\n(.*?)```", DOC.read_text(), re.DOTALL)
[ENERGY_FROM_RAW_ROWS] = re.findall(
    r"```sql energy-from-raw-rows\n(.*?)```", DOC.read_text(), re.DOTALL
)


def test_the_doc_has_ten_queries() -> None:
    assert len(QUERIES) == 10


@pytest.fixture(scope="module")
async def analyst(
    prepared: SetupSettings, db_pool: asyncpg.Pool
) -> AsyncIterator[asyncpg.Connection]:
    # Recent data, some of it flagged, so the queries have rows to show.
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=30)
    async with db_pool.acquire() as writer:
        await registry.add_turbine(writer, "DOCS-1", model="E-82/2300")
        readings = make_series("DOCS-1", start, 600, step_s=2)
        batch = [accepted(r) for r in readings]
        batch[::10] = [replace(a, quality_flags=2) for a in batch[::10]]
        await write_batch(writer, batch, [])
    conn = await asyncpg.connect(prepared.db.model_copy(update={"user": "windpark_analyst"}).dsn())
    try:
        yield conn
    finally:
        await conn.close()


@pytest.mark.parametrize("number", range(1, len(QUERIES) + 1))
async def test_documented_query_runs(analyst: asyncpg.Connection, number: int) -> None:
    rows = await analyst.fetch(QUERIES[number - 1])
    if number in (2, 5, 8, 9):  # these cover the data inserted above
        assert rows, f"query {number} returned nothing"


async def test_the_analyst_cannot_write(analyst: asyncpg.Connection) -> None:
    # Read-only by default, and without write grants even when a session asks otherwise.
    with pytest.raises(asyncpg.ReadOnlySQLTransactionError):
        await analyst.execute("DELETE FROM readings")
    await analyst.execute("SET default_transaction_read_only = off")
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await analyst.execute("DELETE FROM readings")
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await analyst.fetch("SELECT * FROM api_users")


async def test_the_documented_energy_rule_gives_the_views_numbers(
    analyst: asyncpg.Connection,
) -> None:
    """The doc's computation from raw rows, for the fixture's turbine, equals
    turbine_stats_1h: the views show that rule, gaps and the newest reading included."""
    raw = await analyst.fetch(ENERGY_FROM_RAW_ROWS.replace("'WTG01'", "'DOCS-1'"))
    view = await analyst.fetch(
        "SELECT bucket, energy_kwh, covered_s FROM turbine_stats_1h"
        " WHERE turbine_id = 'DOCS-1' ORDER BY bucket"
    )
    assert [r["bucket"] for r in raw] == [v["bucket"] for v in view]
    assert raw
    for r, v in zip(raw, view, strict=True):
        assert v["energy_kwh"] == pytest.approx(r["energy_kwh"], rel=1e-9)
        assert v["covered_s"] == pytest.approx(r["covered_s"], rel=1e-9)
