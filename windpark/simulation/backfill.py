"""Backfill: write clean simulated history straight into ``readings`` with COPY.

The rows are encoded in PostgreSQL's binary COPY format with numpy, a block of readings
at a time, instead of building a Python tuple (and a datetime) per row for
``copy_records_to_table``: encoding then costs a small fraction of the server's time
(the numbers are in ``docs/simulation.md``). The next block is simulated and encoded in
a worker thread while the server copies the current one.

COPY does not skip rows that exist: backfill a range where the turbines have no readings
(a conflict aborts the batch, and the caller's transaction if there is one).

Each row carries its hold (``readings.held_s``, the energy rule of windpark.rollups): the
interval, at most the turbine's ``max_hold_s``, which is right for every row but the last
of each turbine; ``rollups.rebuild`` settles that one, and then updates nothing else.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Final

import numpy as np

from windpark.db import Connection
from windpark.simulation.park import ParkSimulator, ReadingBlock, from_ms, to_ms
from windpark.simulation.turbine import STATES
from windpark.storage import READING_COLUMNS

SOURCE: Final = "backfill"
TABLE: Final = "readings"
# The binary rows are encoded in exactly the order of the ingest path's columns, and the hold.
COLUMNS: Final = (*READING_COLUMNS, "held_s")
COPY_HEADER: Final = b"PGCOPY\n\xff\r\n\x00" + (0).to_bytes(4, "big") + (0).to_bytes(4, "big")
COPY_TRAILER: Final = (-1).to_bytes(2, "big", signed=True)
# timestamptz travels as microseconds since 2000-01-01 00:00 UTC.
_PG_EPOCH_MS: Final = 946_684_800_000
_FLOATS: Final = ("power_kw", "wind_speed_ms", "temperature_c")
_OPTIONAL_FLOATS: Final = ("rotor_rpm", "pitch_deg", "nacelle_temperature_c", "wind_direction_deg")


def _row_dtype(id_bytes: int, state_bytes: int, *, with_setpoint: bool) -> np.dtype[np.void]:
    """One row of the binary COPY stream; every field is preceded by its length."""
    fields: list[tuple[str, str]] = [("count", ">i2"), ("ts_len", ">i4"), ("ts", ">i8")]
    fields += [("id_len", ">i4"), ("id", f"S{id_bytes}"), ("seq_len", ">i4"), ("seq", ">i8")]
    for name in _FLOATS:
        fields += [(f"{name}_len", ">i4"), (name, ">f8")]
    fields += [("state_len", ">i4"), ("state", f"S{state_bytes}")]
    for name in _OPTIONAL_FLOATS:
        fields += [(f"{name}_len", ">i4"), (name, ">f8")]
    fields.append(("setpoint_len", ">i4"))
    if with_setpoint:
        fields.append(("setpoint_kw", ">f8"))
    fields += [("flags_len", ">i4"), ("flags", ">i4"), ("source_len", ">i4")]
    fields += [("source", f"S{len(SOURCE)}"), ("received_len", ">i4"), ("received_at", ">i8")]
    fields += [("held_len", ">i4"), ("held_s", ">f8")]
    return np.dtype(fields)


def encode_copy_rows(
    block: ReadingBlock, *, received_at: datetime, held_s: Sequence[float] | None = None
) -> bytes:
    """The block's rows in binary COPY format (without header and trailer), in ``COLUMNS``;
    ``held_s``: each turbine's (column's) hold, 0 when not given.

    A row's layout depends on the lengths of its text fields and on whether it has a
    set-point, so rows are encoded in groups that share one; COPY does not care about
    the order of rows.
    """
    received_us = (to_ms(received_at) - _PG_EPOCH_MS) * 1000
    ts_us = (block.ts_ms - _PG_EPOCH_MS) * 1000
    has_setpoint = ~np.isnan(block.setpoint_kw)
    parts: list[bytes] = []
    for column, turbine_id in enumerate(block.turbine_ids):
        id_bytes = turbine_id.encode()
        states = block.state[:, column]
        for code, state in enumerate(STATES):
            state_bytes = str(state).encode()
            for with_setpoint in (False, True):
                rows = np.flatnonzero((states == code) & (has_setpoint[:, column] == with_setpoint))
                if not len(rows):
                    continue
                out = np.zeros(
                    len(rows),
                    dtype=_row_dtype(len(id_bytes), len(state_bytes), with_setpoint=with_setpoint),
                )
                out["count"] = len(COLUMNS)
                out["ts_len"] = 8
                out["ts"] = ts_us[rows]
                out["id_len"] = len(id_bytes)
                out["id"] = id_bytes
                out["seq_len"] = 8
                out["seq"] = block.seq[rows, column]
                for name in (*_FLOATS, *_OPTIONAL_FLOATS):
                    out[f"{name}_len"] = 8
                    out[name] = getattr(block, name)[rows, column]
                out["state_len"] = len(state_bytes)
                out["state"] = state_bytes
                if with_setpoint:
                    out["setpoint_len"] = 8
                    out["setpoint_kw"] = block.setpoint_kw[rows, column]
                else:
                    out["setpoint_len"] = -1  # NULL
                out["flags_len"] = 4
                out["source_len"] = len(SOURCE)
                out["source"] = SOURCE.encode()
                out["received_len"] = 8
                out["received_at"] = received_us
                out["held_len"] = 8
                out["held_s"] = held_s[column] if held_s is not None else 0.0
                parts.append(out.tobytes())
    return b"".join(parts)


async def _one_chunk(data: bytes) -> AsyncIterator[bytes]:
    # asyncpg takes a buffer as it is, but its type stubs only admit files and iterables.
    yield data


async def backfill(
    conn: Connection,
    sim: ParkSimulator,
    start: datetime,
    end: datetime,
    *,
    interval_s: float,
    batch_rows: int = 100_000,
    progress: Callable[[int, int], None] | None = None,
    max_hold_s: Mapping[str, float] | None = None,
) -> int:
    """Write clean readings of every turbine of ``sim`` for [start, end) every ``interval_s``.

    ``max_hold_s`` (turbine -> seconds, ``rollups.max_holds``) sets each row's hold;
    without it rows hold nothing until ``rollups.rebuild`` settles them all.

    Returns the number of rows written. ``progress(rows_done, rows_total)`` is called
    after each batch. The simulator advances: it must not have simulated past ``start``.
    """
    interval_ms = round(interval_s * 1000.0)
    if interval_ms < 1:
        raise ValueError("interval_s must be at least 1 ms")
    if batch_rows < 1:
        raise ValueError("batch_rows must be positive")
    start_ms, end_ms = to_ms(start), to_ms(end)
    steps = max(0, -(-(end_ms - start_ms) // interval_ms))
    turbines = len(sim.turbine_ids)
    total = steps * turbines
    per_batch = max(1, batch_rows // turbines)
    held_s = (
        [min(interval_s, max_hold_s[t]) for t in sim.turbine_ids]
        if max_hold_s is not None
        else None
    )

    def encode_batch(first_step: int) -> tuple[bytes, int]:
        count = min(per_batch, steps - first_step)
        block = sim.simulate_block(from_ms(start_ms + first_step * interval_ms), count, interval_s)
        rows = encode_copy_rows(block, received_at=datetime.now(UTC), held_s=held_s)
        return COPY_HEADER + rows + COPY_TRAILER, len(block)

    written = 0
    pending = asyncio.ensure_future(asyncio.to_thread(encode_batch, 0)) if steps else None
    try:
        for first_step in range(0, steps, per_batch):
            assert pending is not None
            data, rows = await pending
            following = first_step + per_batch
            pending = (
                asyncio.ensure_future(asyncio.to_thread(encode_batch, following))
                if following < steps
                else None
            )
            await conn.copy_to_table(
                TABLE, source=_one_chunk(data), columns=list(COLUMNS), format="binary"
            )
            written += rows
            if progress is not None:
                progress(written, total)
    finally:
        if pending is not None:
            # A thread cannot be interrupted: wait for it, so that the simulator is never
            # used by two threads at once if the caller goes on with it.
            await asyncio.gather(pending, return_exceptions=True)
    return written
