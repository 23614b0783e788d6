"""``windpark retention``: apply the retention period now."""

from __future__ import annotations

import asyncpg
from pydantic import Field

from windpark import retention
from windpark.settings import DatabaseSettings, WindparkSettings


class RetentionSettings(WindparkSettings):
    db: DatabaseSettings = DatabaseSettings()
    retention_days: int = Field(default=90, ge=8)


async def run_retention(days: int | None) -> int:
    settings = RetentionSettings()
    conn = await asyncpg.connect(settings.db.dsn())
    try:
        result = await retention.enforce(conn, days or settings.retention_days)
    finally:
        await conn.close()
    print(
        f"dropped {result.dropped_chunks} chunks of raw readings, "
        f"{result.deleted_rejects} rejects, {result.deleted_duplicates} duplicate records, "
        f"{result.deleted_conflicts} conflicts"
    )
    return 0
