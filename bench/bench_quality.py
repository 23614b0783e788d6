"""Validator accuracy through the real pipeline, against the simulator's ground truth.

Runs a generator (N = 0.1 by default, every fault kind) and a concentrator as
`make run` starts them, then reconciles the database with the ground-truth log and
prints the confusion matrix. Targets (issue 4): hard faults rejected with precision
and recall >= 0.99, soft faults flagged with recall >= 0.95, valid readings wrongly
rejected < 0.1 %, and no published seq unaccounted for.

    python bench/bench_quality.py [--turbines 10] [--readings 2000] [--error-rate 0.1]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import asyncpg

from windpark import accounting, registry
from windpark.bootstrap import SetupSettings, setup
from windpark.turbines_cli import provision


async def wait_reconciled(
    settings: SetupSettings, senders: list[str], truth: Path, readings: int
) -> accounting.Report:
    """The report once every published message has its row (or after two minutes)."""
    deadline = time.monotonic() + 120
    while True:
        conn = await asyncpg.connect(settings.db.dsn())
        ledgers = await accounting.read_ledgers(conn, senders)
        await conn.close()
        report = accounting.reconcile(ledgers, accounting.load_truth(truth), readings)
        if report.db_rows >= report.published_messages or time.monotonic() > deadline:
            return report
        await asyncio.sleep(0.5)


def spawn(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "windpark", *args],
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )


async def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--turbines", type=int, default=10)
    parser.add_argument("--readings", type=int, default=2000)
    parser.add_argument("--error-rate", type=float, default=0.1)
    parser.add_argument("--interval", type=float, default=0.01)
    parser.add_argument("--restart", action="store_true", help="kill -9 the concentrator mid-run")
    args = parser.parse_args()

    os.environ.setdefault("WINDPARK_DB__NAME", "windpark_bench")
    settings = SetupSettings(park_size=0)
    await setup(settings)
    prefix = f"Q{uuid.uuid4().hex[:6]}-"
    senders = registry.park_turbine_ids(args.turbines, prefix)
    for sender in senders:
        # Registry row and broker user: the generator logs in as each turbine.
        await provision(settings, sender, model="E-82/2300")

    work = Path(tempfile.mkdtemp(prefix="windpark-bench-"))
    truth = work / "truth.jsonl"
    env = dict(
        os.environ,
        WINDPARK_ERROR_RATE=str(args.error_rate),
        WINDPARK_INTERVAL_S=str(args.interval),
        WINDPARK_ID_PREFIX=prefix,
        WINDPARK_GROUND_TRUTH_PATH=str(truth),
    )
    started = time.monotonic()
    concentrator = spawn(["concentrator"], env, work / "concentrator.log")
    generator = spawn(
        ["generator", "--turbines", str(args.turbines), "--count", str(args.readings)],
        env,
        work / "generator.log",
    )
    if args.restart:
        await asyncio.sleep(args.readings * args.interval / 2)
        concentrator.send_signal(signal.SIGKILL)
        concentrator.wait()
        concentrator = spawn(["concentrator"], env, work / "concentrator-2.log")
    if generator.wait() != 0:
        print((work / "generator.log").read_text()[-3000:])
        return 1
    report = await wait_reconciled(settings, senders, truth, args.readings)
    elapsed = time.monotonic() - started
    concentrator.send_signal(signal.SIGTERM)
    concentrator.wait()

    print(
        f"turbines {args.turbines} x readings {args.readings}, N = {args.error_rate}, "
        f"restart = {args.restart}, {elapsed:.1f} s"
    )
    print(
        f"published messages {report.published_messages}, rows {report.db_rows}, "
        f"unaccounted seqs {sum(len(v) for v in report.missing.values())}"
    )
    print(report.matrix())
    hard_p, hard_r = report.precision("rejected"), report.recall("rejected")
    soft_r = report.recall("flagged")
    false_reject = report.false_reject_rate()
    print(f"hard: precision {hard_p:.4f} recall {hard_r:.4f} (target >= 0.99)")
    print(f"soft: recall {soft_r:.4f} (target >= 0.95)")
    print(f"valid wrongly rejected: {false_reject:.4%} (target < 0.1 %)")
    print("per fault kind (actual outcomes):")
    for kind, outcomes in sorted(report.by_kind.items()):
        print(f"  {kind:22s} {dict(outcomes)}")
    ok = (
        not report.missing
        and report.db_rows == report.published_messages
        and hard_p >= 0.99
        and hard_r >= 0.99
        and soft_r >= 0.95
        and false_reject < 0.001
    )
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
