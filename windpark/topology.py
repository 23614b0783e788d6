"""Declares the broker topology of the wire contract (idempotent).

Called by ``windpark setup`` and again by the concentrator at start-up, so the
queue exists and is bound before any turbine publishes: a publish that matches
no queue is confirmed by the broker and lost.
"""

from __future__ import annotations

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractQueue

from windpark import contract


async def declare(channel: AbstractChannel) -> AbstractQueue:
    """Declare exchanges and queues; returns the concentrator's queue."""
    exchange = await channel.declare_exchange(
        contract.EXCHANGE, aio_pika.ExchangeType.TOPIC, durable=True
    )
    dead_exchange = await channel.declare_exchange(
        contract.DEAD_LETTER_EXCHANGE, aio_pika.ExchangeType.FANOUT, durable=True
    )
    dead_queue = await channel.declare_queue(
        contract.DEAD_LETTER_QUEUE, durable=True, arguments=contract.DEAD_LETTER_QUEUE_ARGUMENTS
    )
    await dead_queue.bind(dead_exchange, routing_key="#")
    queue = await channel.declare_queue(
        contract.QUEUE, durable=True, arguments=contract.QUEUE_ARGUMENTS
    )
    await queue.bind(exchange, routing_key=contract.ROUTING_PATTERN)
    return queue
