"""Backfill without a database: the binary COPY stream and the batching around it."""

from __future__ import annotations

import math
import struct
from collections.abc import AsyncIterable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from windpark.contract import Reading
from windpark.simulation import ParkSimulator, Reliability, SimTurbine, Site
from windpark.simulation.backfill import (
    COLUMNS,
    COPY_HEADER,
    COPY_TRAILER,
    backfill,
    encode_copy_rows,
)
from windpark.turbine_model import load_model

E82 = load_model("E-82/2300")
START = datetime(2026, 5, 1, tzinfo=UTC)
PG_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
RECEIVED = datetime(2026, 11, 28, 18, 0, 0, 123000, tzinfo=UTC)


def make_sim() -> ParkSimulator:
    outages = Reliability(mtbf_days=0.2, mean_repair_h=0.2, maintenance_interval_days=1)
    return ParkSimulator(
        turbines=[
            SimTurbine(turbine_id="WTG01", model=E82, reliability=outages),
            SimTurbine(turbine_id="WTG-LONG-NAME", model=E82, curtailment_kw=1500.0),
        ],
        site=Site(mean_wind_ms=12.0),
        seed=3,
    )


def decode_copy(data: bytes) -> list[dict[str, Any]]:
    """Parse PostgreSQL's binary COPY format (the subset the backfill writes)."""
    assert data.startswith(COPY_HEADER)
    assert data.endswith(COPY_TRAILER)
    rows = []
    at, end = len(COPY_HEADER), len(data) - len(COPY_TRAILER)
    while at < end:
        (count,) = struct.unpack_from(">h", data, at)
        at += 2
        assert count == len(COLUMNS)
        row: dict[str, Any] = {}
        for column in COLUMNS:
            (size,) = struct.unpack_from(">i", data, at)
            at += 4
            if size < 0:
                row[column] = None
                continue
            raw = data[at : at + size]
            at += size
            if column in ("ts", "received_at"):
                row[column] = PG_EPOCH + timedelta(microseconds=struct.unpack(">q", raw)[0])
            elif column == "seq":
                row[column] = struct.unpack(">q", raw)[0]
            elif column == "quality_flags":
                row[column] = struct.unpack(">i", raw)[0]
            elif column in ("turbine_id", "state", "source"):
                row[column] = raw.decode()
            else:
                row[column] = struct.unpack(">d", raw)[0]
        rows.append(row)
    return rows


def as_row(reading: Reading) -> dict[str, Any]:
    row = reading.model_dump(exclude={"v"})
    row["state"] = str(reading.state)
    return row


def test_binary_rows_hold_the_readings() -> None:
    block = make_sim().simulate_block(START, 3000, 10.0)
    rows = decode_copy(COPY_HEADER + encode_copy_rows(block, received_at=RECEIVED) + COPY_TRAILER)
    assert len(rows) == len(block)
    assert {r["source"] for r in rows} == {"backfill"}
    assert {r["received_at"] for r in rows} == {RECEIVED}
    assert {r["quality_flags"] for r in rows} == {0}
    assert {r.pop("held_s") for r in rows} == {0.0}  # no holds given: rebuild settles them
    assert any(r["setpoint_kw"] is None for r in rows)
    assert any(r["setpoint_kw"] is not None for r in rows)
    assert len({r["state"] for r in rows}) >= 3
    got = sorted(
        (
            {k: v for k, v in r.items() if k not in ("source", "received_at", "quality_flags")}
            for r in rows
        ),
        key=lambda r: (r["ts"], r["turbine_id"]),
    )
    want = sorted((as_row(r) for r in block.readings()), key=lambda r: (r["ts"], r["turbine_id"]))
    assert got == want


class FakeConnection:
    """Records what would have been copied."""

    def __init__(self) -> None:
        self.copies: list[tuple[str, list[str], str, bytes]] = []

    async def copy_to_table(
        self, table: str, *, source: AsyncIterable[bytes], columns: list[str], format: str
    ) -> str:
        data = b"".join([chunk async for chunk in source])
        self.copies.append((table, columns, format, data))
        return f"COPY {len(decode_copy(data))}"


async def test_backfill_copies_every_reading_in_batches() -> None:
    conn = FakeConnection()
    seen: list[tuple[int, int]] = []
    end = START + timedelta(seconds=1234.5)  # the end is exclusive: 1235 instants
    written = await backfill(
        conn,  # type: ignore[arg-type]
        make_sim(),
        START,
        end,
        interval_s=1.0,
        batch_rows=500,
        progress=lambda done, total: seen.append((done, total)),
    )
    assert written == 2 * 1235
    assert len(conn.copies) == math.ceil(1235 / 250)
    assert {(table, fmt) for table, _, fmt, _ in conn.copies} == {("readings", "binary")}
    assert all(columns == list(COLUMNS) for _, columns, _, _ in conn.copies)
    assert seen[-1] == (written, written)
    assert [done for done, _ in seen] == sorted(done for done, _ in seen)

    rows = [row for *_, data in conn.copies for row in decode_copy(data)]
    assert len(rows) == written
    assert min(r["ts"] for r in rows) == START
    assert max(r["ts"] for r in rows) == START + timedelta(seconds=1234)
    # Batches continue one simulation: the same rows as one block.
    whole = make_sim().simulate_block(START, 1235, 1.0).readings()
    key = lambda r: (r["ts"], r["turbine_id"])  # noqa: E731
    not_readings = ("source", "received_at", "quality_flags", "held_s")
    trimmed = [{k: v for k, v in r.items() if k not in not_readings} for r in rows]
    got = sorted(trimmed, key=key)
    want = sorted((as_row(r) for r in whole), key=key)
    for a, b in zip(got, want, strict=True):
        assert a.pop("nacelle_temperature_c") == pytest.approx(b.pop("nacelle_temperature_c"))
        assert a == b


async def test_backfill_of_an_empty_range_writes_nothing() -> None:
    conn = FakeConnection()
    assert await backfill(conn, make_sim(), START, START, interval_s=1.0) == 0  # type: ignore[arg-type]
    assert conn.copies == []


def test_rows_hold_the_interval_capped_at_each_turbines_max_hold() -> None:
    sim = make_sim()
    block = sim.simulate_block(START, 20, 10.0)
    caps = {sim.turbine_ids[0]: 3.0, sim.turbine_ids[1]: 30.0}
    held = [min(10.0, caps[t]) for t in sim.turbine_ids]
    rows = decode_copy(
        COPY_HEADER + encode_copy_rows(block, received_at=RECEIVED, held_s=held) + COPY_TRAILER
    )
    assert {(r["turbine_id"], r["held_s"]) for r in rows} == {
        (sim.turbine_ids[0], 3.0),
        (sim.turbine_ids[1], 10.0),
    }
