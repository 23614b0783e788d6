"""Start windpark's processes the way ``make run`` (and compose) start them."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import asyncpg
import pytest

from windpark.bootstrap import SetupSettings

T = TypeVar("T")
ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def windpark_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    # The child stops when this test process dies, however it dies (windpark.cli).
    env["WINDPARK_PARENT_PID"] = str(os.getpid())
    env.update(extra)
    return env


@contextlib.contextmanager
def windpark_process(
    args: list[str], env: dict[str, str], log: Path
) -> Iterator[subprocess.Popen[bytes]]:
    """``windpark ARGS`` as a child process; stopped with SIGINT (Ctrl-C) at the end."""
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "windpark", *args],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            yield process
        finally:
            stop_process(process)


def stop_process(process: subprocess.Popen[bytes], timeout_s: float = 30.0) -> int:
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode


def poll(check: Callable[[], T | None], timeout_s: float, interval_s: float = 0.2) -> T:
    """The first non-None result of ``check`` within the deadline."""
    deadline = time.monotonic() + timeout_s
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            result = check()
        except Exception as exc:  # services still starting: connection refused, ...
            last_error = exc
            result = None
        if result is not None:
            return result
        time.sleep(interval_s)
    raise AssertionError(f"not reached within {timeout_s} s (last error: {last_error!r})")


async def fetch(settings: SetupSettings, sql: str, *args: object) -> list[asyncpg.Record]:
    """One query on a connection of its own (callable from a polling thread's event loop)."""
    conn = await asyncpg.connect(settings.db.dsn())
    try:
        return await conn.fetch(sql, *args)
    finally:
        await conn.close()


@pytest.fixture
def logs_dir(tmp_path: Path) -> Path:
    return tmp_path
