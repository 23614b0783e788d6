"""The API's link to RabbitMQ: a robust connection and a confirming publisher, when there is one.

The API must serve reads while the broker is down, so the first connection is made
by a background task that keeps trying with backoff; until it succeeds, ``publisher``
is None and readiness says so. After the first success aio-pika's robust connection
reconnects by itself and restores the publisher's channel.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from aio_pika.abc import AbstractRobustConnection

from windpark.amqp_connection import connect_robust
from windpark.publishing import ReadingPublisher
from windpark.settings import BrokerSettings

log = logging.getLogger("windpark.aggregator.broker")
# How long closing waits for a connect in progress before cancelling it.
CLOSE_WAIT_S = 5.0


class BrokerLink:
    def __init__(
        self, settings: BrokerSettings, *, retry_initial_s: float, retry_max_s: float
    ) -> None:
        self._settings = settings
        self._retry_initial_s = retry_initial_s
        self._retry_max_s = retry_max_s
        self._connection: AbstractRobustConnection | None = None
        self._publisher: ReadingPublisher | None = None
        self._task: asyncio.Task[None] | None = None
        self.last_error: str | None = "not connected yet"

    @property
    def publisher(self) -> ReadingPublisher | None:
        """The publisher while the connection is up; None while it is down or reconnecting."""
        return self._publisher if self.is_connected else None

    @property
    def is_connected(self) -> bool:
        connection = self._connection
        return (
            connection is not None
            and self._publisher is not None
            and not connection.is_closed
            and connection.connected.is_set()
        )

    def start(self) -> None:
        self._task = asyncio.create_task(self._connect_until_done(), name="broker-connect")

    async def wait_connected(self, timeout_s: float) -> bool:
        """For start-up and tests: wait a little for the first connection."""
        if self._task is None:
            return self.is_connected
        try:
            await asyncio.wait_for(asyncio.shield(self._task), timeout_s)
        except TimeoutError:
            return False
        return self.is_connected

    async def close(self) -> None:
        if self._task is not None and not self._task.done():
            # Let a connect in progress finish first: aio-pika's robust connection,
            # cancelled mid-connect, can leave a reconnect task behind that ignores
            # cancellation and keeps the event loop from closing.
            await asyncio.wait({self._task}, timeout=CLOSE_WAIT_S)
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._publisher is not None:
            await self._publisher.close()
        if self._connection is not None:
            await self._connection.close()

    async def _connect_until_done(self) -> None:
        delay = self._retry_initial_s
        while True:
            connection: AbstractRobustConnection | None = None
            try:
                connection = await connect_robust(self._settings)
                publisher = ReadingPublisher(connection)
                await publisher.open()
            except Exception as exc:  # any failure here is retried; the API stays up
                self.last_error = type(exc).__name__  # the details go to the log only
                log.warning("broker not reachable (%s); retrying in %.0f s", exc, delay)
                if connection is not None:
                    await _close_quietly(connection)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._retry_max_s)
                continue
            self._connection = connection
            self._publisher = publisher
            self.last_error = None
            log.info("connected to the broker at %s", self._settings.host)
            return


async def _close_quietly(connection: AbstractRobustConnection) -> None:
    try:
        await connection.close()
    except Exception:  # a half-open connection may fail to close; it is dropped anyway
        log.debug("closing a failed broker connection", exc_info=True)
