"""Database typing shared by the modules that take a connection as an argument."""

from __future__ import annotations

from typing import TypeAlias

import asyncpg
from asyncpg.pool import PoolConnectionProxy

# A plain connection or one borrowed from a pool: functions that run SQL take either.
# (A string: PoolConnectionProxy is generic only in asyncpg's type stubs.)
Connection: TypeAlias = "asyncpg.Connection[asyncpg.Record] | PoolConnectionProxy[asyncpg.Record]"
