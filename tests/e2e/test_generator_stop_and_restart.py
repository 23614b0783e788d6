"""A generator that stops publishes what it simulated, and a restarted one continues its
turbine's sequence (so a stored ``seq_reset`` flag means a real reset)."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from pathlib import Path

import pytest

from tests.conftest import provisioned_turbines
from tests.e2e.conftest import fetch, poll, windpark_env, windpark_process
from windpark.bootstrap import SetupSettings
from windpark.validation import QualityFlag

pytestmark = pytest.mark.slow
COUNT = 5


async def _stored(prepared: SetupSettings, turbine_id: str) -> list[tuple[int, int]]:
    sql = "SELECT seq, quality_flags FROM readings WHERE turbine_id = $1 ORDER BY ts"
    return [(row["seq"], row["quality_flags"]) for row in await fetch(prepared, sql, turbine_id)]


async def test_a_restarted_generator_continues_its_sequence_and_sends_what_it_held(
    prepared: SetupSettings, logs_dir: Path
) -> None:
    turbine_id = f"R{uuid.uuid4().hex[:8]}"
    # Every reading gets an out-of-order fault where one can apply: seq 0, 2, 4, ... are
    # held back until the next reading is sent, and the last one (seq 4 of 5) only by the
    # stop itself.
    env = windpark_env(
        WINDPARK_ERROR_RATE="1",
        WINDPARK_FAULT_MIX="out_of_order=1",
        WINDPARK_INTERVAL_S="0.05",
        WINDPARK_STATE_DIR=str(logs_dir / "state"),
    )
    generator = ["generator", "--turbine-id", turbine_id, "--count", str(COUNT)]
    async with provisioned_turbines(prepared, [turbine_id]):
        with contextlib.ExitStack() as stack:
            stack.enter_context(
                windpark_process(["concentrator"], env, logs_dir / "concentrator.log")
            )
            for run in (1, 2):
                log = logs_dir / f"generator-{run}.log"
                with windpark_process(generator, env, log) as process:
                    code = await asyncio.to_thread(process.wait, 60)
                assert code == 0, log.read_text()
                assert f"{COUNT} messages confirmed, 0 dropped" in log.read_text()

            def all_stored() -> list[tuple[int, int]] | None:
                stored = asyncio.run(_stored(prepared, turbine_id))
                return stored if len(stored) >= 2 * COUNT else None

            stored = await asyncio.to_thread(poll, all_stored, 60.0, 0.3)

    # In time order; the second run's seqs follow the first run's.
    assert sorted(seq for seq, _ in stored) == list(range(2 * COUNT)), stored
    reset = [seq for seq, flags in stored if flags & QualityFlag.SEQ_RESET]
    assert reset == [], f"seq_reset flagged on seq {reset}"
    state = (logs_dir / "state" / f"{turbine_id}.json").read_text()
    assert f'"next_seq":{2 * COUNT}' in state
