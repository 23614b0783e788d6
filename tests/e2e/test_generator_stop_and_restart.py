"""A generator that stops publishes what it simulated, and a restarted one continues its
turbine's sequence (so a stored ``seq_reset`` flag means a real reset)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import uuid
from pathlib import Path

import orjson
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


async def test_a_generator_killed_mid_run_never_repeats_a_seq(
    prepared: SetupSettings, logs_dir: Path
) -> None:
    turbine_id = f"K{uuid.uuid4().hex[:8]}"
    env = windpark_env(WINDPARK_INTERVAL_S="0.05", WINDPARK_STATE_DIR=str(logs_dir / "state"))
    async with provisioned_turbines(prepared, [turbine_id]):
        with windpark_process(["concentrator"], env, logs_dir / "concentrator.log"):
            killed_log = logs_dir / "generator-killed.log"
            with windpark_process(["generator", "--turbine-id", turbine_id], env, killed_log) as p:

                def some_stored() -> list[tuple[int, int]] | None:
                    assert p.poll() is None, killed_log.read_text()
                    stored = asyncio.run(_stored(prepared, turbine_id))
                    return stored if len(stored) >= 3 else None

                await asyncio.to_thread(poll, some_stored, 60.0, 0.1)
                # No chance to write its state: the last reservation is all there is.
                p.send_signal(signal.SIGKILL)
                p.wait()
            state = orjson.loads((logs_dir / "state" / f"{turbine_id}.json").read_bytes())
            reserved = int(state["next_seq"])
            log = logs_dir / "generator-restarted.log"
            restarted = ["generator", "--turbine-id", turbine_id, "--count", str(COUNT)]
            with windpark_process(restarted, env, log) as process:
                assert await asyncio.to_thread(process.wait, 60) == 0, log.read_text()

            def restart_stored() -> list[tuple[int, int]] | None:
                stored = asyncio.run(_stored(prepared, turbine_id))
                after = [row for row in stored if row[0] >= reserved]
                return after if len(after) >= COUNT else None

            after = await asyncio.to_thread(poll, restart_stored, 60.0, 0.3)

    stored = await _stored(prepared, turbine_id)
    reset = [seq for seq, flags in stored if flags & QualityFlag.SEQ_RESET]
    assert reset == [], f"seq_reset flagged on seq {reset}"
    # In time order, the restarted run's seqs continue above every seq sent before, from
    # the reserved block's end on.
    assert [seq for seq, _ in stored] == sorted(seq for seq, _ in stored)
    assert after[0][0] == reserved
    assert after[0][1] & QualityFlag.SEQ_GAP  # the unused rest of the reserved block
