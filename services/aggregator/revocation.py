"""Is a token's account still what it was when the token was issued? Checked on every
request, against a small cache, so that revocation does not cost a query per request.

A token carries its account's token version (claim ``ver``); deleting the account,
changing its password, secret or scopes, or disabling it changes the version or removes
it (``windpark.credentials``). The cache keeps each subject's live version for
``max_age_s``: that is the bound on how long a revoked token can still pass, in this
process and in every other one, since the changes come from ``windpark users|clients``
in another process. Everything here runs on the event loop: a dict look-up on a hit, one
indexed query per subject and ``max_age_s`` on a miss, shared by the requests that
arrive meanwhile.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Final

import asyncpg

from windpark import credentials

# Subjects tracked at most; tokens are signed, so only real accounts' subjects get here,
# but a bound keeps memory fixed whatever the number of accounts.
MAX_SUBJECTS: Final = 10_000


class TokenVersions:
    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        max_age_s: float,
        clock: Callable[[], float] = time.monotonic,
        max_subjects: int = MAX_SUBJECTS,
    ) -> None:
        self._pool = pool
        self.max_age_s = max_age_s
        self._clock = clock
        self._max_subjects = max_subjects
        # subject -> (live version or None, when it was read)
        self._known: dict[str, tuple[int | None, float]] = {}
        self._reading: dict[str, asyncio.Task[int | None]] = {}

    async def is_current(self, subject: str, version: int) -> bool:
        known = self._known.get(subject)
        if known is not None and self._clock() - known[1] < self.max_age_s:
            return known[0] == version
        return await self._read(subject) == version

    async def _read(self, subject: str) -> int | None:
        # One query per subject at a time, in a task of its own: the requests that wait
        # for it share its answer, and a request that is cancelled does not cancel it.
        task = self._reading.get(subject)
        if task is None:
            task = asyncio.create_task(self._query(subject))
            self._reading[subject] = task
            task.add_done_callback(lambda _: self._reading.pop(subject, None))
        return await asyncio.shield(task)

    async def _query(self, subject: str) -> int | None:
        # Stamped before the query: an entry is never younger than what it says.
        read_at = self._clock()
        async with self._pool.acquire() as conn:
            version = await credentials.live_token_version(conn, subject)
        if len(self._known) >= self._max_subjects:
            # Crude but bounded: everyone is read again once, nobody is trusted longer.
            self._known.clear()
        self._known[subject] = (version, read_at)
        return version
