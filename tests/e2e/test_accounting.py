"""Nothing lost, nothing counted twice: published = stored + rejected + duplicates, by seq,
with erroneous data at N = 0.2, across a concentrator killed in the middle of the run."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import asyncpg
import pytest

from tests.conftest import provisioned_turbines
from tests.e2e.conftest import poll, windpark_env, windpark_process
from windpark import accounting, registry
from windpark.bootstrap import SetupSettings

pytestmark = pytest.mark.slow
TURBINES = 3
READINGS = 150


async def _run_generator(env: dict[str, str], log: Path) -> None:
    with windpark_process(
        ["generator", "--turbines", str(TURBINES), "--count", str(READINGS)], env, log
    ) as gen:
        code = await asyncio.to_thread(gen.wait, 120)
    assert code == 0, await asyncio.to_thread(log.read_text)


async def _reconciled(
    prepared: SetupSettings, senders: list[str], truth: Path
) -> accounting.Report:
    async def attempt() -> accounting.Report | None:
        conn = await asyncpg.connect(prepared.db.dsn())
        try:
            ledgers = await accounting.read_ledgers(conn, senders)
        finally:
            await conn.close()
        report = accounting.reconcile(ledgers, accounting.load_truth(truth), READINGS)
        return None if report.missing or report.db_rows < report.published_messages else report

    def check() -> accounting.Report | None:
        return asyncio.run(attempt())

    return await asyncio.to_thread(poll, check, 60.0, 0.5)


@pytest.mark.parametrize("kill_concentrator", [False, True], ids=["steady", "killed-mid-run"])
async def test_every_published_reading_is_stored_rejected_or_a_counted_duplicate(
    prepared: SetupSettings, logs_dir: Path, kill_concentrator: bool
) -> None:
    prefix = f"E{uuid.uuid4().hex[:6]}-"
    senders = registry.park_turbine_ids(TURBINES, prefix)
    async with provisioned_turbines(prepared, senders):
        await _run_accounting(prepared, logs_dir, prefix, senders, kill_concentrator)


async def _run_accounting(
    prepared: SetupSettings,
    logs_dir: Path,
    prefix: str,
    senders: list[str],
    kill_concentrator: bool,
) -> None:
    truth = logs_dir / "truth.jsonl"
    env = windpark_env(
        WINDPARK_ERROR_RATE="0.2",
        WINDPARK_INTERVAL_S="0.02",
        WINDPARK_ID_PREFIX=prefix,
        WINDPARK_GROUND_TRUTH_PATH=str(truth),
        WINDPARK_SEED=str(uuid.uuid4().int % 1_000_000),
    )
    generator = asyncio.create_task(_run_generator(env, logs_dir / "generator.log"))
    with windpark_process(["concentrator"], env, logs_dir / "concentrator-1.log") as first:
        if kill_concentrator:
            # Killed without warning while readings flow: its unacked batch is redelivered.
            await asyncio.sleep(1.5)
            first.send_signal(signal.SIGKILL)
            first.wait()
    with windpark_process(["concentrator"], env, logs_dir / "concentrator-2.log"):
        await generator
        report = await _reconciled(prepared, senders, truth)

    assert report.missing == {}
    # Every message published is exactly one row: reading, reject or counted duplicate.
    assert report.db_rows == report.published_messages
    assert report.count("rejected", "rejected") > 0
    assert report.count("duplicate", "duplicate") >= 0
    # Every reading the simulator sent clean is stored, none rejected.
    assert report.count("accepted", "rejected") == 0
    assert report.count("rejected", "accepted") + report.count("rejected", "flagged") == 0


async def test_generator_exits_cleanly_on_sigterm(prepared: SetupSettings, logs_dir: Path) -> None:
    prefix = f"S{uuid.uuid4().hex[:6]}-"
    async with provisioned_turbines(prepared, registry.park_turbine_ids(2, prefix)):
        await asyncio.to_thread(
            _generator_sigterm, windpark_env(WINDPARK_ID_PREFIX=prefix), logs_dir
        )


def _generator_sigterm(env: dict[str, str], logs_dir: Path) -> None:
    log = logs_dir / "gen.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "windpark", "generator", "--turbines", "2"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        poll(lambda: True if b"simulating" in log.read_bytes() else None, 20)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0, log.read_text()
