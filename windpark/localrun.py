"""``windpark run`` (behind ``make run``): the whole system on this machine.

Runs ``windpark setup``, then starts each service as its own process, exactly as
the compose file starts one container each: N generators (one turbine each),
the concentrator and the API. Prints the URLs, and on Ctrl-C (or SIGTERM) stops
the generators first, then the concentrator once it has drained, then the API.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from types import FrameType

from windpark.bootstrap import SetupSettings
from windpark.registry import park_turbine_ids

STOP_TIMEOUT_S = 15.0


def _spawn(args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    # A process group of its own, so that the terminal's Ctrl-C reaches only us and we
    # stop the children in order.
    # WINDPARK_PARENT_PID: the child stops when we die, even by SIGKILL (windpark.cli).
    return subprocess.Popen(
        [sys.executable, "-m", "windpark", *args],
        env={**env, "WINDPARK_PARENT_PID": str(os.getpid())},
        start_new_session=True,
    )


def _stop(processes: list[subprocess.Popen[bytes]]) -> None:
    for p in processes:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT_S
    for p in processes:
        try:
            p.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def _wait_http(url: str, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1) as response:  # noqa: S310 (our own localhost URL)
                if response.status == 200:
                    return True
        except OSError:
            time.sleep(0.2)
    return False


def cli_help() -> str:
    """How to reach the `windpark` command: `make run` installs it in the virtualenv,
    which is not on the PATH. README.md ("The `windpark` command") says the same."""
    bin_dir = Path(sys.executable).parent
    if bin_dir.is_relative_to(Path.cwd()):  # else a venv elsewhere: its absolute path
        bin_dir = bin_dir.relative_to(Path.cwd())
    return (
        f"  CLI          . {bin_dir}/activate   (then: windpark --help;"
        f" or without it: {bin_dir}/windpark --help)\n"
    )


def _token_help(base: str) -> str:
    """How to get a token as the local `admin` user (`windpark setup` made it)."""
    password_file = SetupSettings().api.admin_password_file
    try:
        password = password_file.read_text(encoding="utf-8").strip()
    except OSError:
        return f"  API tokens   no {password_file}: create a user with `windpark users add`\n"
    return (
        f"  API user     admin, password {password} (in {password_file})\n"
        f"  API token    TOKEN=$(curl -s {base}/v1/token -d grant_type=password -d username=admin"
        f" --data-urlencode password@{password_file} | python3 -c"
        " 'import json,sys; print(json.load(sys.stdin)[\"access_token\"])')\n"
        f'               curl -s -H "Authorization: Bearer $TOKEN" {base}/datos-generadores/\n'
    )


def run_all(*, generators: int, host: str, port: int) -> int:
    env = dict(os.environ)
    setup = subprocess.run(
        [sys.executable, "-m", "windpark", "setup", "--park-size", str(generators)],
        env=env,
        check=False,
    )
    if setup.returncode != 0:
        print("windpark: setup failed; see the messages above", file=sys.stderr)
        return setup.returncode

    stopping = False

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    api = _spawn(["api", "--host", host, "--port", str(port)], env)
    concentrator = _spawn(["concentrator"], env)
    gens = [
        _spawn(["generator", "--turbine-id", turbine_id], env)
        for turbine_id in park_turbine_ids(generators)
    ]
    base = f"http://{host}:{port}"
    if _wait_http(f"{base}/healthz", 30):
        print(
            f"\nwindpark is running: {generators} generators, concentrator, API\n"
            f"  API          {base}/\n"
            f"  API docs     {base}/docs\n"
            f"  latest       {base}/datos-generadores/\n"
            f"  aggregates   {base}/agregados/\n"
            f"  psql         psql -h 127.0.0.1 -U windpark windpark\n"
            f"{cli_help()}"
            f"{_token_help(base)}"
            "Ctrl-C stops everything.\n",
            flush=True,
        )
    else:
        print(f"windpark: the API did not answer on {base}/healthz", file=sys.stderr)
        stopping = True

    code = 0
    while not stopping:
        time.sleep(0.5)
        for name, p in [("api", api), ("concentrator", concentrator)]:
            if p.poll() is not None:
                print(f"windpark: the {name} exited with {p.returncode}; stopping", file=sys.stderr)
                stopping, code = True, 1
    print("\nwindpark: stopping generators, concentrator, API ...", flush=True)
    _stop(gens)
    _stop([concentrator])
    _stop([api])
    print("windpark: stopped", flush=True)
    return code
