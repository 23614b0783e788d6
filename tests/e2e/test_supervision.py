"""A windpark process started by a supervisor stops when the supervisor dies, even by
SIGKILL, instead of running on unsupervised (WINDPARK_PARENT_PID, windpark.cli)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.conftest import provisioned_turbines
from tests.e2e.conftest import poll, windpark_env
from windpark import registry
from windpark.bootstrap import SetupSettings

pytestmark = pytest.mark.slow

# A stand-in supervisor: starts `windpark generator` as `windpark run` starts its
# children, prints the child's pid, then waits to be killed.
SUPERVISOR = """
import os, subprocess, sys, time
env = {**os.environ, "WINDPARK_PARENT_PID": str(os.getpid())}
child = subprocess.Popen([sys.executable, "-m", "windpark", "generator", "--turbines", "1"],
                         env=env, stdout=open(sys.argv[1], "wb"), stderr=subprocess.STDOUT)
print(child.pid, flush=True)
time.sleep(120)
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not yet reaped by init) counts as stopped.
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().split(") ", 1)[1][0] != "Z"


async def test_a_child_stops_when_its_supervisor_is_killed(
    prepared: SetupSettings, logs_dir: Path
) -> None:
    prefix = f"P{uuid.uuid4().hex[:6]}-"
    async with provisioned_turbines(prepared, registry.park_turbine_ids(1, prefix)):
        await asyncio.to_thread(
            _kill_the_supervisor,
            windpark_env(WINDPARK_ID_PREFIX=prefix, WINDPARK_STATE_DIR=str(logs_dir / "state")),
            logs_dir / "generator.log",
        )


def _kill_the_supervisor(env: dict[str, str], log: Path) -> None:
    env.pop("WINDPARK_PARENT_PID")  # the stand-in supervisor is the child's parent
    with subprocess.Popen(
        [sys.executable, "-c", SUPERVISOR, str(log)], env=env, stdout=subprocess.PIPE
    ) as supervisor:
        try:
            assert supervisor.stdout is not None
            child = int(supervisor.stdout.readline())
            poll(lambda: True if log.exists() and b"simulating" in log.read_bytes() else None, 30)
            supervisor.send_signal(signal.SIGKILL)
            supervisor.wait()
            poll(lambda: True if not _alive(child) else None, 20)
            assert b"confirmed" in log.read_bytes(), log.read_text()  # a clean stop's last line
        finally:
            if supervisor.poll() is None:
                supervisor.kill()
