"""The turbine registry as HTTP ingest sees it: read once, re-read when an unknown id arrives.

A turbine may be provisioned after the API started. Re-reading the registry on every
unknown id would let anyone make the API query the database per request, so a
refresh happens at most once per ``refresh_interval_s``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping

import asyncpg

from windpark.registry import RegisteredTurbine, load_registry


class RegistryCache:
    def __init__(self, *, refresh_interval_s: float) -> None:
        self._refresh_interval_s = refresh_interval_s
        self._turbines: dict[str, RegisteredTurbine] | None = None
        self._loaded_at = float("-inf")
        self._lock = asyncio.Lock()

    async def turbines(self, pool: asyncpg.Pool) -> Mapping[str, RegisteredTurbine]:
        if self._turbines is None:
            return await self._load(pool)
        return self._turbines

    async def refresh(self, pool: asyncpg.Pool) -> Mapping[str, RegisteredTurbine] | None:
        """Re-read the registry unless that happened less than the refresh interval ago;
        None when it was too soon."""
        if self._is_fresh():
            return None
        return await self._load(pool)

    def _is_fresh(self) -> bool:
        return time.monotonic() - self._loaded_at < self._refresh_interval_s

    async def _load(self, pool: asyncpg.Pool) -> Mapping[str, RegisteredTurbine]:
        async with self._lock:
            # Another request may have loaded it while this one waited for the lock.
            if self._turbines is not None and self._is_fresh():
                return self._turbines
            async with pool.acquire() as conn:
                self._turbines = await load_registry(conn)
            self._loaded_at = time.monotonic()
            return self._turbines
