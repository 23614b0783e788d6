"""Declares the broker topology of the wire contract (idempotent).

``windpark setup`` declares it, as the admin identity, before any turbine user exists,
so the queue is bound before any turbine can publish: a publish (AMQP or MQTT) that
matches no queue is confirmed by the broker and lost. The services' own users may not
declare anything; they only check, passively, that their part of it is there.
"""

from __future__ import annotations

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractQueue
from aiormq.exceptions import ChannelNotFoundEntity

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


class TopologyMissingError(RuntimeError):
    """The broker lacks what `windpark setup` declares."""


async def existing_queue(channel: AbstractChannel) -> AbstractQueue:
    """The concentrator's queue, declared passively: no configure permission needed.

    The channel is closed by the broker when the queue is missing.
    """
    try:
        return await channel.declare_queue(contract.QUEUE, passive=True)
    except ChannelNotFoundEntity as exc:
        raise TopologyMissingError(
            f"queue {contract.QUEUE} does not exist on the broker: run `windpark setup` first"
        ) from exc
