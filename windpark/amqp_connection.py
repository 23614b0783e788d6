"""Opening a robust AMQP connection that is closed again when the first connect fails.

``aio_pika.connect_robust`` builds the connection object and then connects; when that
first connect fails (broker down, login refused, TLS error) it raises without closing
the object, which leaves its close coroutine unawaited and, at times, a reconnect task
that keeps the event loop from shutting down. Every windpark service opens its broker
connection here instead.
"""

from __future__ import annotations

import aio_pika
from aio_pika.abc import AbstractRobustConnection
from yarl import URL

from windpark.settings import BrokerSettings


async def connect_robust(broker: BrokerSettings) -> AbstractRobustConnection:
    connection = aio_pika.RobustConnection(URL(broker.url()), ssl_context=broker.ssl_context())
    try:
        await connection.connect()
    except BaseException:
        await connection.close()
        raise
    return connection
