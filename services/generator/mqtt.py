"""Publishing readings over MQTT (``--transport mqtt``), as a field device would.

RabbitMQ's MQTT plugin (3.10: MQTT 3.1.1) turns the topic ``telemetry/<id>`` into the
routing key ``telemetry.<id>`` on the ``telemetry`` exchange, so MQTT readings reach the
same queue as AMQP ones; the concentrator tells them apart by the ``x-mqtt-publish-qos``
header. QoS 1: a publish returns once the broker's PUBACK arrived, which the plugin sends
after the message was routed (to the quorum queue, whose queue was declared by
`windpark setup` before any turbine could log in).

One MQTT connection per turbine, as itself (user = turbine id, over TLS): the broker's
topic permission lets it publish only to its own topic. MQTT 3.1.1 carries no message
properties, so the message id does not travel; the concentrator keys MQTT rejects and
duplicates by payload instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable
from typing import Final

import aiomqtt

from windpark import contract
from windpark.publishing import PUBLISH_TIMEOUT_S, PublishError
from windpark.settings import BrokerSettings

log = logging.getLogger("windpark.generator.mqtt")

QOS_AT_LEAST_ONCE: Final = 1
KEEPALIVE_S: Final = 30


def mqtt_client(broker: BrokerSettings, turbine_id: str) -> aiomqtt.Client:
    identity = broker.for_user(turbine_id)
    return aiomqtt.Client(
        identity.host,
        identity.mqtt_port,
        username=identity.mqtt_username(),
        password=identity.password_value(),
        identifier=f"windpark-{turbine_id}",
        protocol=aiomqtt.ProtocolVersion.V311,
        clean_session=True,
        keepalive=KEEPALIVE_S,
        timeout=PUBLISH_TIMEOUT_S,
        tls_context=identity.ssl_context(),
    )


class MqttPublisher:
    """One MQTT client per turbine, connected lazily and again after any failure."""

    def __init__(self, broker: BrokerSettings, turbine_ids: Iterable[str]) -> None:
        self._broker = broker
        self._turbine_ids = set(turbine_ids)
        self._clients: dict[str, aiomqtt.Client] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    def adopt(self, turbine_id: str, client: aiomqtt.Client) -> None:
        """Take over a client already connected (by the turbine claim)."""
        self._turbine_ids.add(turbine_id)
        self._clients[turbine_id] = client

    async def close(self) -> None:
        for turbine_id, client in list(self._clients.items()):
            await self._drop(turbine_id, client)

    async def _client(self, turbine_id: str) -> aiomqtt.Client:
        lock = self._locks.setdefault(turbine_id, asyncio.Lock())
        async with lock:
            client = self._clients.get(turbine_id)
            if client is None:
                client = mqtt_client(self._broker, turbine_id)
                try:
                    await client.__aenter__()
                except aiomqtt.MqttError as exc:
                    raise PublishError(f"MQTT connect as {turbine_id} failed: {exc}") from exc
                self._clients[turbine_id] = client
            return client

    async def _drop(self, turbine_id: str, client: aiomqtt.Client) -> None:
        # Only this client: a concurrent publish may already have connected a new one.
        if self._clients.get(turbine_id) is client:
            del self._clients[turbine_id]
        with contextlib.suppress(aiomqtt.MqttError, OSError):
            await client.__aexit__(None, None, None)

    async def publish(
        self,
        payload: bytes,
        *,
        turbine_id: str,
        message_id: str,
        timeout_s: float = PUBLISH_TIMEOUT_S,
    ) -> None:
        if turbine_id not in self._turbine_ids:
            raise PublishError(f"no MQTT identity for turbine {turbine_id}")
        client = await self._client(turbine_id)
        try:
            await client.publish(
                contract.mqtt_topic(turbine_id),
                payload,
                qos=QOS_AT_LEAST_ONCE,
                timeout=timeout_s,
            )
        except aiomqtt.MqttError as exc:
            # The broker closes the connection on a refused publish; unacknowledged
            # messages are sent again (by the caller) on a new one.
            await self._drop(turbine_id, client)
            raise PublishError(f"MQTT publish of {message_id} failed: {exc}") from exc
