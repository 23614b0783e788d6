"""How a generator reaches the broker: as each of its turbines, over AMQPS or MQTTS.

Every turbine has its own broker user, allowed to publish under its own routing key only,
so a process that simulates N turbines holds N connections, each with that turbine's
credentials (``var/secrets/broker/<id>``, written by `windpark setup`).

**Claiming a turbine** (``claim_turbine``, compose's ``--scale generator=N``, where every
container has the same environment): the broker allows each turbine user one connection
at a time, so a generator tries the park's turbines in order with their credentials and
keeps the first connection the broker accepts; that turbine is its identity for as long
as the connection lives. A refused login moves on to the next id; when every id is
taken the generator exits with an error (compose restarts it: an id frees up when its
holder's connection closes, at once on a clean exit or a crash, after the heartbeat
timeout when its host vanishes).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Protocol, TypeVar

import aiomqtt
from aio_pika.abc import AbstractRobustConnection
from aiomqtt.exceptions import MqttConnectError
from aiormq.exceptions import AMQPConnectionError, InvalidFrameError, ProbableAuthenticationError

from services.generator.config import Settings
from services.generator.mqtt import MqttPublisher, mqtt_client
from windpark.amqp_connection import connect_robust
from windpark.publishing import PublishError, ReadingPublisher
from windpark.registry import park_turbine_ids
from windpark.settings import BrokerConfigurationError, BrokerSettings

log = logging.getLogger("windpark.generator")
T = TypeVar("T")
MAX_RETRY_S = 10.0


class Publisher(Protocol):
    async def publish(self, payload: bytes, *, turbine_id: str, message_id: str) -> None: ...


class IdentityRefusedError(Exception):
    """The broker refused this turbine's login (taken, or not allowed on the vhost)."""


class TurbinePublishers:
    """Routes each message to the publisher connected as its turbine."""

    def __init__(self, publishers: Mapping[str, ReadingPublisher]) -> None:
        self._publishers = dict(publishers)

    async def publish(self, payload: bytes, *, turbine_id: str, message_id: str) -> None:
        publisher = self._publishers.get(turbine_id)
        if publisher is None:
            raise PublishError(f"no broker identity for turbine {turbine_id}")
        await publisher.publish(payload, turbine_id=turbine_id, message_id=message_id)


async def connect_amqp(broker: BrokerSettings) -> AbstractRobustConnection:
    """One attempt; a login refused after authentication raises IdentityRefusedError."""
    try:
        return await connect_robust(broker)
    except ProbableAuthenticationError:
        raise
    except InvalidFrameError as exc:
        # RabbitMQ answers Connection.Open with Connection.Close when the user's connection
        # limit is reached (or it has no access to the vhost); aiormq reports it this way.
        raise IdentityRefusedError(f"{broker.user}: login refused by the broker") from exc


async def connect_mqtt(broker: BrokerSettings, turbine_id: str) -> aiomqtt.Client:
    client = mqtt_client(broker, turbine_id)
    try:
        await client.__aenter__()
    except MqttConnectError as exc:
        raise IdentityRefusedError(f"{turbine_id}: MQTT login refused ({exc})") from exc
    return client


def _unreachable(exc: BaseException) -> bool:
    """A failure that waiting may cure (broker starting, network); not a refused login nor a
    certificate we do not trust, which are configuration errors to report at once."""
    if isinstance(exc, ProbableAuthenticationError | MqttConnectError):
        return False
    if isinstance(exc.__cause__, ssl.SSLCertVerificationError) or (
        "CERTIFICATE_VERIFY_FAILED" in str(exc)  # aiomqtt keeps only the message
    ):
        return False
    return isinstance(exc, OSError | AMQPConnectionError | aiomqtt.MqttError)


async def _until_reachable(what: str, attempt: Callable[[], Awaitable[T]]) -> T:
    """Retry while the broker is unreachable; any other failure is raised."""
    delay = 0.5
    while True:
        try:
            return await attempt()
        except Exception as exc:
            if not _unreachable(exc):
                raise
            log.warning("%s: broker not reachable (%r); retrying in %.1f s", what, exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, MAX_RETRY_S)


async def claim_turbine(
    candidates: Sequence[str], connect: Callable[[str], Awaitable[T]]
) -> tuple[str, T]:
    """The first turbine whose login the broker accepts, with its connection."""
    for turbine_id in candidates:
        try:
            return turbine_id, await _until_reachable(
                f"claiming {turbine_id}", functools.partial(connect, turbine_id)
            )
        except IdentityRefusedError:
            log.debug("turbine %s is taken", turbine_id)
        except (ProbableAuthenticationError, BrokerConfigurationError) as exc:
            log.warning("cannot log in as turbine %s: %s", turbine_id, exc)
    raise RuntimeError(
        f"no free turbine identity among {len(candidates)} ({candidates[0]}..{candidates[-1]}):"
        " every one is connected elsewhere or has no usable credentials"
    )


@contextlib.asynccontextmanager
async def open_publisher(
    settings: Settings, turbine_ids: Sequence[str]
) -> AsyncIterator[tuple[Settings, Publisher]]:
    """Connect as each of ``turbine_ids``, or as the claimed turbine with claim_turbine;
    yields the settings with the claimed id."""
    broker = settings.broker
    must_claim = settings.claim_turbine and settings.turbine_id is None
    candidates = park_turbine_ids(settings.park_size, settings.id_prefix)
    async with contextlib.AsyncExitStack() as stack:
        if settings.transport == "mqtt":
            mqtt = MqttPublisher(broker, [])
            stack.push_async_callback(mqtt.close)
            if must_claim:
                turbine_id, client = await claim_turbine(
                    candidates, functools.partial(connect_mqtt, broker)
                )
                mqtt.adopt(turbine_id, client)
                settings = settings.model_copy(update={"turbine_id": turbine_id})
                log.info("claimed turbine id %s (MQTT)", turbine_id)
            else:
                for turbine_id in turbine_ids:
                    client = await _until_reachable(
                        f"MQTT as {turbine_id}", functools.partial(connect_mqtt, broker, turbine_id)
                    )
                    mqtt.adopt(turbine_id, client)
            yield settings, mqtt
            return

        connections: dict[str, AbstractRobustConnection] = {}
        if must_claim:
            turbine_id, connection = await claim_turbine(
                candidates, lambda t: connect_amqp(broker.for_user(t))
            )
            connections[turbine_id] = connection
            stack.push_async_callback(connection.close)
            settings = settings.model_copy(update={"turbine_id": turbine_id})
            log.info("claimed turbine id %s", turbine_id)
        else:
            for turbine_id in turbine_ids:
                connection = await _until_reachable(
                    f"connecting as {turbine_id}",
                    functools.partial(connect_amqp, broker.for_user(turbine_id)),
                )
                connections[turbine_id] = connection
                stack.push_async_callback(connection.close)
        publishers: dict[str, ReadingPublisher] = {}
        for turbine_id, connection in connections.items():
            publisher = ReadingPublisher(connection)
            await publisher.open()
            stack.push_async_callback(publisher.close)
            publishers[turbine_id] = publisher
        yield settings, TurbinePublishers(publishers)
