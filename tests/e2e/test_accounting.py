"""Nothing lost, nothing counted twice: published = stored + rejected + duplicates, by seq,
with erroneous data at N = 0.2, across a concentrator killed in the middle of the run."""

from __future__ import annotations

import asyncio
import contextlib
import re
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import asyncpg
import pytest

from tests.conftest import provisioned_turbines
from tests.e2e.conftest import fetch, poll, windpark_env, windpark_process
from windpark import accounting, registry
from windpark.bootstrap import SetupSettings

pytestmark = pytest.mark.slow
TURBINES = 3
READINGS = 150
RECONCILE_TIMEOUT_S = 60.0
STOPPED_RE = re.compile(rb"generator stopped: (\d+) messages confirmed, (\d+) dropped")


async def _stored_readings(prepared: SetupSettings, senders: list[str]) -> int:
    sql = "SELECT count(*) FROM readings WHERE turbine_id = ANY($1::text[])"
    return int((await fetch(prepared, sql, senders))[0][0])


async def _report(prepared: SetupSettings, senders: list[str], truth: Path) -> accounting.Report:
    conn = await asyncpg.connect(prepared.db.dsn())
    try:
        ledgers = await accounting.read_ledgers(conn, senders)
    finally:
        await conn.close()
    return accounting.reconcile(ledgers, accounting.load_truth(truth), READINGS)


def _complete(report: accounting.Report) -> bool:
    return not report.problems and report.db_rows >= (
        report.published_messages + report.redeliveries
    )


async def _reconciled(
    prepared: SetupSettings, senders: list[str], truth: Path
) -> accounting.Report:
    """The report once every published message has its row, or the last one at the deadline
    (so that a failure names what is missing instead of timing out)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + RECONCILE_TIMEOUT_S
    while True:
        report = await _report(prepared, senders, truth)
        if _complete(report) or loop.time() > deadline:
            return report
        await asyncio.sleep(0.5)


def _wait_for_line(log: Path, needle: bytes, process: subprocess.Popen[bytes]) -> None:
    def seen() -> bool | None:
        assert process.poll() is None, log.read_text()
        return True if needle in log.read_bytes() else None

    poll(seen, 60.0)


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
    generator_log = logs_dir / "generator.log"
    env = windpark_env(
        WINDPARK_ERROR_RATE="0.2",
        WINDPARK_INTERVAL_S="0.02",
        WINDPARK_ID_PREFIX=prefix,
        WINDPARK_GROUND_TRUTH_PATH=str(truth),
        WINDPARK_STATE_DIR=str(logs_dir / "state"),
        WINDPARK_SEED=str(uuid.uuid4().int % 1_000_000),
    )
    generator_args = ["generator", "--turbines", str(TURBINES), "--count", str(READINGS)]
    with contextlib.ExitStack() as stack:
        first_log = logs_dir / "concentrator-1.log"
        first = stack.enter_context(windpark_process(["concentrator"], env, first_log))
        # Consuming before the first publish, so that the kill below lands while both run.
        await asyncio.to_thread(_wait_for_line, first_log, b"consuming", first)
        generator = stack.enter_context(windpark_process(generator_args, env, generator_log))
        if kill_concentrator:
            await _kill_mid_run(prepared, senders, first, generator)
            stack.enter_context(
                windpark_process(["concentrator"], env, logs_dir / "concentrator-2.log")
            )
        code = await asyncio.to_thread(generator.wait, 120)
        assert code == 0, generator_log.read_text()
        report = await _reconciled(prepared, senders, truth)

    log_text = generator_log.read_bytes()
    stopped = STOPPED_RE.search(log_text)
    assert stopped is not None, log_text.decode()
    confirmed, dropped = int(stopped[1]), int(stopped[2])
    # The generator's own count and its ground truth agree: every reading it simulated
    # (TURBINES x READINGS) and every copy it logged was confirmed, none dropped.
    assert (confirmed, dropped) == (report.published_messages, 0), (
        f"generator confirmed {confirmed} and dropped {dropped} of"
        f" {report.published_messages} messages; its log ends:\n{log_text[-2000:].decode()}"
    )
    assert not report.problems, "\n".join(
        [f"{len(report.problems)} problems:", *report.problems[:40]]
    )
    # Every message published is exactly one row (reading, reject or counted copy); a
    # message delivered twice adds at most one duplicate row under its own message id.
    assert report.db_rows == report.published_messages + report.redeliveries
    assert report.count("rejected", "rejected") > 0
    # Every copy the simulator sent is counted once as a duplicate, and nothing else is:
    # copies are ~2 % of 450 readings, so a run with none has a probability of ~0.02 %.
    assert report.expected_copies > 0
    assert report.count("duplicate", "duplicate") == report.expected_copies
    # Every reading the simulator sent clean is stored, none rejected.
    assert report.count("accepted", "rejected") == 0
    assert report.count("rejected", "accepted") + report.count("rejected", "flagged") == 0


async def _kill_mid_run(
    prepared: SetupSettings,
    senders: list[str],
    concentrator: subprocess.Popen[bytes],
    generator: subprocess.Popen[bytes],
) -> None:
    """SIGKILL the concentrator once it has stored some of this run's readings while the
    generator still publishes: its unacked deliveries go back to the queue."""

    def stored_while_publishing() -> int | None:
        assert generator.poll() is None, "the generator ended before any reading was stored"
        stored = asyncio.run(_stored_readings(prepared, senders))
        return stored if stored > 0 else None

    stored = await asyncio.to_thread(poll, stored_while_publishing, 60.0, 0.05)
    concentrator.send_signal(signal.SIGKILL)
    concentrator.wait()
    assert generator.poll() is None, "the kill came after the generator's last reading"
    assert 0 < stored < TURBINES * READINGS


async def test_generator_exits_cleanly_on_sigterm(prepared: SetupSettings, logs_dir: Path) -> None:
    prefix = f"S{uuid.uuid4().hex[:6]}-"
    async with provisioned_turbines(prepared, registry.park_turbine_ids(2, prefix)):
        await asyncio.to_thread(
            _generator_sigterm,
            windpark_env(WINDPARK_ID_PREFIX=prefix, WINDPARK_STATE_DIR=str(logs_dir / "state")),
            logs_dir,
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
