"""Publishing readings to the broker with confirms: used by the generator and HTTP ingest.

A publish returns only when the broker has confirmed the message (written to the
quorum queue's majority). ``mandatory=True`` with ``on_return_raises=True`` turns a
message that no queue would receive into an error instead of a silent confirm.
"""

from __future__ import annotations

import asyncio
from typing import Final

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractExchange, AbstractRobustConnection
from aiormq.exceptions import AMQPError, ChannelInvalidStateError
from pamqp.commands import Basic

from windpark import contract

# aio-pika's publish can hang while a robust connection is reconnecting (aio-pika #636);
# a bounded wait turns that into an error the caller retries.
PUBLISH_TIMEOUT_S: Final = 10.0


class PublishError(RuntimeError):
    """The broker did not confirm the message (nack, return, timeout or closed channel)."""


class ReadingPublisher:
    def __init__(self, connection: AbstractRobustConnection) -> None:
        self._connection = connection
        self._channel: AbstractChannel | None = None
        self._exchange: AbstractExchange | None = None

    async def open(self) -> None:
        self._channel = await self._connection.channel(
            publisher_confirms=True, on_return_raises=True
        )
        # Passive: the topology belongs to `windpark setup`; publishers only check it is there.
        self._exchange = await self._channel.get_exchange(contract.EXCHANGE, ensure=True)

    async def close(self) -> None:
        if self._channel is not None and not self._channel.is_closed:
            await self._channel.close()

    async def publish(
        self,
        payload: bytes,
        *,
        turbine_id: str,
        message_id: str,
        timeout_s: float = PUBLISH_TIMEOUT_S,
    ) -> None:
        if self._exchange is None:
            raise RuntimeError("ReadingPublisher.open() was not called")
        message = aio_pika.Message(
            body=payload,
            content_type=contract.CONTENT_TYPE,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            message_id=message_id,
            headers={"schema_version": contract.SCHEMA_VERSION},
        )
        try:
            confirmation = await asyncio.wait_for(
                self._exchange.publish(
                    message, routing_key=contract.routing_key(turbine_id), mandatory=True
                ),
                timeout=timeout_s,
            )
        except (TimeoutError, AMQPError, ChannelInvalidStateError, ConnectionError) as exc:
            raise PublishError(f"publish of {message_id} failed: {exc!r}") from exc
        if not isinstance(confirmation, Basic.Ack):
            raise PublishError(f"broker did not ack {message_id}: {confirmation!r}")
