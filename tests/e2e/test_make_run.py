"""The system started the way `make run` starts it: ten generators, concentrator, API."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import httpx
import pytest

from tests.e2e.conftest import free_port, poll, stop_process, windpark_env, windpark_process
from windpark.bootstrap import SetupSettings
from windpark.registry import park_turbine_ids

pytestmark = pytest.mark.slow
PARK = park_turbine_ids(10)


async def test_make_run_serves_fresh_readings_and_exact_park_means(
    prepared: SetupSettings, logs_dir: Path
) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    started = time.monotonic()
    with windpark_process(
        ["run", "--generators", "10", "--port", str(port)],
        # The park's seq state of its own: the clone's var/state belongs to `make run`.
        windpark_env(WINDPARK_STATE_DIR=str(logs_dir / "state")),
        logs_dir / "run.log",
    ) as process:
        # As a user of `make run` does: the admin password that setup wrote, then a token.
        password_file = SetupSettings().api.admin_password_file

        def admin_token() -> str | None:
            answer = httpx.post(
                f"{base}/v1/token",
                data={
                    "grant_type": "password",
                    "username": "admin",
                    "password": password_file.read_text(encoding="utf-8"),
                },
                timeout=5,
            )
            return str(answer.json()["access_token"]) if answer.status_code == 200 else None

        auth = {"Authorization": f"Bearer {await asyncio.to_thread(poll, admin_token, 30.0)}"}
        async with httpx.AsyncClient() as anonymous:
            refused = await anonymous.get(f"{base}/datos-generadores/", timeout=5)
        assert refused.status_code == 401

        def ten_fresh_turbines() -> list[dict[str, object]] | None:
            answer = httpx.get(f"{base}/datos-generadores/", headers=auth, timeout=2)  # in a thread
            rows = [r for r in answer.json()["turbines"] if r["turbine_id"] in PARK]
            fresh = [r for r in rows if r["age_s"] is not None and r["age_s"] < 5]
            return rows if len(fresh) == 10 else None

        rows = await asyncio.to_thread(poll, ten_fresh_turbines, 30.0)
        elapsed = time.monotonic() - started
        assert elapsed < 15, f"10 fresh turbines after {elapsed:.1f} s"
        assert {r["turbine_id"] for r in rows} == set(PARK)

        # The minute in progress, once it has ended (plus a few seconds for the last
        # batch to be committed), is the last full minute.
        first_full = datetime.now(UTC).replace(second=0, microsecond=0)
        minute_end = first_full + timedelta(minutes=1)
        await asyncio.sleep((minute_end - datetime.now(UTC)).total_seconds() + 3)
        async with httpx.AsyncClient() as client:
            answer = await client.get(
                f"{base}/agregados/",
                params={
                    "intervalo": "minuto",
                    "desde": first_full.isoformat(),
                    "hasta": minute_end.isoformat(),
                },
                headers=auth,
                timeout=5,
            )
        assert answer.status_code == 200, answer.text
        body = answer.json()
        conn = await asyncpg.connect(prepared.db.dsn())
        try:
            expected = await conn.fetchrow(
                "SELECT avg(power_kw) AS mean, count(DISTINCT turbine_id) AS turbines"
                " FROM readings WHERE ts >= $1 AND ts < $2",
                first_full,
                minute_end,
            )
        finally:
            await conn.close()
        assert expected is not None
        assert expected["turbines"] >= 10
        [bucket] = [
            b for b in body["buckets"] if datetime.fromisoformat(b["bucket_start"]) == first_full
        ]
        assert bucket["partial"] is False
        assert bucket["park_mean_power_kw"] == pytest.approx(expected["mean"], rel=1e-9)
        assert stop_process(process) == 0
