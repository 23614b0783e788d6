"""windpark's broker refuses what it must: against the real node (`scripts/broker.sh`).

Identities: a turbine publishes under its own routing key only, and can neither consume,
declare nor administer; guest and anonymous logins fail; a turbine holds one connection.
Transport: no plain listener in the secure profile, only TLS 1.2+ with windpark's CA,
host names checked. MQTT: a turbine's publish reaches the concentrator's queue with its
routing key. `windpark turbines add` gives a working identity.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import socket
import ssl
import subprocess
import sys
import time
import uuid
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable

import aio_pika
import aiomqtt
import asyncpg
import httpx
import pytest
from aio_pika.abc import (
    AbstractChannel,
    AbstractIncomingMessage,
    AbstractQueue,
    AbstractRobustConnection,
)
from aiomqtt.exceptions import MqttConnectError
from aiormq.exceptions import (
    AMQPConnectionError,
    ChannelAccessRefused,
    ProbableAuthenticationError,
)
from pamqp.commands import Basic
from pydantic import SecretStr

from services.generator.transport import (
    IdentityRefusedError,
    claim_turbine,
    connect_amqp,
)
from tests.conftest import new_turbine_id, turbine_identity
from tests.factories import make_payload
from tests.integration.test_concentrator import running_concentrator
from windpark import contract
from windpark.bootstrap import SetupSettings
from windpark.broker_admin import BrokerAdmin, Credentials
from windpark.settings import API_USER, CONCENTRATOR_USER, BrokerSettings

DEADLINE_S = 15.0
SECURE_PROFILE = os.environ.get("WINDPARK_BROKER_PROFILE", "secure") == "secure"
# What windpark's node serves, all on loopback (scripts/broker.sh).
TLS_PORTS = {"amqps": 5671, "mqtts": 8883, "management": 15671}
DEV_PLAIN_PORTS = {"amqp": 5673, "mqtt": 1884}


def as_user(prepared: SetupSettings, user: str, password: str) -> BrokerSettings:
    return prepared.broker.model_copy(
        update={"user": user, "password": SecretStr(password), "password_file": None}
    )


def as_turbine(prepared: SetupSettings, credentials: Credentials) -> BrokerSettings:
    return as_user(prepared, credentials.user, credentials.password)


async def connect(broker: BrokerSettings) -> aio_pika.abc.AbstractConnection:
    return await aio_pika.connect(broker.url(), ssl_context=broker.ssl_context())


def mqtt_client(broker: BrokerSettings, **overrides: object) -> aiomqtt.Client:
    options: dict[str, object] = {
        "username": broker.mqtt_username(),
        "password": broker.password_value(),
        "identifier": f"test-{uuid.uuid4().hex[:8]}",
        "protocol": aiomqtt.ProtocolVersion.V311,
        "tls_context": broker.ssl_context(),
        "timeout": 10,
    }
    options.update(overrides)
    return aiomqtt.Client(broker.host, broker.mqtt_port, **options)  # type: ignore[arg-type]


async def eventually(check: Callable[[], Awaitable[bool]], timeout_s: float = DEADLINE_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout_s} s")
        await asyncio.sleep(0.05)


async def tap(channel: AbstractChannel, routing_key: str) -> AbstractQueue:
    """A private queue (the admin's) that sees what is routed under ``routing_key``."""
    queue = await channel.declare_queue(exclusive=True, auto_delete=True)
    await queue.bind(contract.EXCHANGE, routing_key=routing_key)
    return queue


@pytest.fixture(autouse=True)
async def _empty_queue(amqp: AbstractRobustConnection) -> AsyncIterator[None]:
    """Messages these tests route to the concentrator's queue are not left for others."""
    yield
    channel = await amqp.channel()
    queue = await channel.declare_queue(contract.QUEUE, passive=True)
    await queue.purge()
    await channel.close()


@pytest.fixture
async def other_turbine(prepared: SetupSettings) -> AsyncIterator[Credentials]:
    async with turbine_identity(prepared, new_turbine_id("O")) as credentials:
        yield credentials


# A turbine's identity ---------------------------------------------------------------------------


async def test_turbine_publishes_under_its_own_routing_key_only(
    prepared: SetupSettings,
    amqp: AbstractRobustConnection,
    turbine_credentials: Credentials,
    other_turbine: Credentials,
) -> None:
    admin_channel = await amqp.channel()
    own_tap = await tap(admin_channel, contract.routing_key(turbine_credentials.user))
    other_tap = await tap(admin_channel, contract.routing_key(other_turbine.user))
    connection = await connect(as_turbine(prepared, turbine_credentials))
    try:
        channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        exchange = await channel.get_exchange(contract.EXCHANGE, ensure=True)
        body = make_payload(turbine_id=turbine_credentials.user)
        confirm = await exchange.publish(
            aio_pika.Message(body),
            routing_key=contract.routing_key(turbine_credentials.user),
            mandatory=True,
        )
        assert isinstance(confirm, Basic.Ack)
        with pytest.raises(ChannelAccessRefused) as refused:
            await exchange.publish(
                aio_pika.Message(make_payload(turbine_id=other_turbine.user)),
                routing_key=contract.routing_key(other_turbine.user),
                mandatory=True,
            )
        assert f"telemetry.{other_turbine.user}" in str(refused.value)
        assert channel.is_closed
    finally:
        await connection.close()
    own = await own_tap.get(no_ack=True, fail=False, timeout=5)
    assert own is not None
    assert own.body == body
    assert await other_tap.get(no_ack=True, fail=False) is None
    await admin_channel.close()


async def _ignore(_message: AbstractIncomingMessage) -> None:
    pass


async def test_turbine_cannot_consume_the_concentrator_queue(
    prepared: SetupSettings, turbine_credentials: Credentials
) -> None:
    connection = await connect(as_turbine(prepared, turbine_credentials))
    try:
        channel = await connection.channel()
        # Passive declaration needs no permission; reading the queue does.
        queue = await channel.declare_queue(contract.QUEUE, passive=True)
        with pytest.raises(ChannelAccessRefused, match=re.escape(contract.QUEUE)):
            await queue.consume(_ignore)
        channel = await connection.channel()
        queue = await channel.declare_queue(contract.QUEUE, passive=True)
        with pytest.raises(ChannelAccessRefused, match=re.escape(contract.QUEUE)):
            await queue.get(no_ack=True, fail=False)
    finally:
        await connection.close()


@pytest.mark.parametrize(
    "declare",
    [
        pytest.param(lambda ch: ch.declare_queue("turbine.own", auto_delete=True), id="named"),
        pytest.param(lambda ch: ch.declare_queue(exclusive=True), id="server-named-exclusive"),
        pytest.param(
            lambda ch: ch.declare_exchange("turbine.exchange", auto_delete=True), id="exchange"
        ),
    ],
)
async def test_turbine_cannot_declare(
    prepared: SetupSettings,
    turbine_credentials: Credentials,
    declare: Callable[[AbstractChannel], Awaitable[object]],
) -> None:
    connection = await connect(as_turbine(prepared, turbine_credentials))
    try:
        channel = await connection.channel()
        with pytest.raises(ChannelAccessRefused):
            await declare(channel)
    finally:
        await connection.close()


async def test_turbine_cannot_use_the_management_api(
    prepared: SetupSettings, turbine_credentials: Credentials
) -> None:
    broker = as_turbine(prepared, turbine_credentials)
    async with httpx.AsyncClient(
        verify=broker.ssl_context() or True,
        auth=(turbine_credentials.user, turbine_credentials.password),
    ) as http:
        answer = await http.get(f"{broker.management_url()}/overview")
    assert answer.status_code == 401


async def test_a_turbine_holds_one_connection_at_a_time(
    prepared: SetupSettings, turbine_credentials: Credentials
) -> None:
    broker = as_turbine(prepared, turbine_credentials)
    first = await connect_amqp(broker)
    try:
        with pytest.raises(IdentityRefusedError):
            await connect_amqp(broker)
        with pytest.raises(MqttConnectError):
            async with mqtt_client(broker):
                pass
    finally:
        await first.close()
    second = await connect_amqp(broker)
    await second.close()


async def test_scaled_generators_claim_distinct_turbines_by_their_credentials(
    prepared: SetupSettings,
) -> None:
    prefix = f"C{uuid.uuid4().hex[:6]}-"
    ids = [f"{prefix}{i}" for i in (1, 2)]

    def connector(turbine_id: str) -> Awaitable[AbstractRobustConnection]:
        # prepared.broker is the admin's: for_user drops its password, so each login uses
        # the turbine's secret file, as a generator container does.
        return connect_amqp(prepared.broker.for_user(turbine_id))

    async with (
        turbine_identity(prepared, ids[0]),
        turbine_identity(prepared, ids[1]),
        contextlib.AsyncExitStack() as held,
    ):
        first_id, first = await claim_turbine(ids, connector)
        held.push_async_callback(first.close)
        second_id, second = await claim_turbine(ids, connector)
        held.push_async_callback(second.close)
        assert (first_id, second_id) == (ids[0], ids[1])
        with pytest.raises(RuntimeError, match="no free turbine identity"):
            await claim_turbine(ids, connector)
        await second.close()
        freed_id, again = await claim_turbine(ids, connector)
        held.push_async_callback(again.close)
        assert freed_id == ids[1]


# Who else may log in ------------------------------------------------------------------------------


async def test_guest_cannot_log_in(prepared: SetupSettings) -> None:
    guest = as_user(prepared, "guest", "guest")
    with pytest.raises(ProbableAuthenticationError):
        await connect(guest)
    with pytest.raises(MqttConnectError):
        async with mqtt_client(guest):
            pass
    async with BrokerAdmin.open(prepared.broker) as admin:
        assert not await admin.user_exists("guest")


async def test_anonymous_and_wrong_password_mqtt_logins_fail(
    prepared: SetupSettings, turbine_credentials: Credentials
) -> None:
    broker = as_turbine(prepared, turbine_credentials)
    with pytest.raises(MqttConnectError):
        async with mqtt_client(broker, username=None, password=None):
            pass
    with pytest.raises(MqttConnectError):
        async with mqtt_client(broker, password=turbine_credentials.password + "x"):
            pass
    with pytest.raises(ProbableAuthenticationError):
        await connect(as_user(prepared, turbine_credentials.user, "wrong"))
    # The same client with the right password gets in: the refusals above are about them.
    async with mqtt_client(broker):
        pass


async def test_service_identities_are_limited_to_their_job(
    prepared: SetupSettings, turbine_id: str
) -> None:
    concentrator = await connect(prepared.broker.for_user(CONCENTRATOR_USER))
    try:
        channel = await concentrator.channel(publisher_confirms=True)
        exchange = await channel.get_exchange(contract.EXCHANGE, ensure=True)
        with pytest.raises(ChannelAccessRefused):
            await exchange.publish(
                aio_pika.Message(b"{}"), routing_key=contract.routing_key(turbine_id)
            )
        channel = await concentrator.channel()
        with pytest.raises(ChannelAccessRefused):
            await channel.declare_queue("concentrator.extra", auto_delete=True)
    finally:
        await concentrator.close()
    api = await connect(prepared.broker.for_user(API_USER))
    try:
        channel = await api.channel(publisher_confirms=True, on_return_raises=True)
        exchange = await channel.get_exchange(contract.EXCHANGE, ensure=True)
        confirm = await exchange.publish(
            aio_pika.Message(make_payload(turbine_id=turbine_id)),
            routing_key=contract.routing_key(turbine_id),
            mandatory=True,
        )
        assert isinstance(confirm, Basic.Ack)
        queue = await channel.declare_queue(contract.QUEUE, passive=True)
        with pytest.raises(ChannelAccessRefused):
            await queue.get(no_ack=True, fail=False)
    finally:
        await api.close()


# Transport: TLS only ----------------------------------------------------------------------------


@pytest.mark.skipif(not SECURE_PROFILE, reason="the dev profile adds plain listeners on purpose")
async def test_the_broker_has_no_plain_listener(prepared: SetupSettings) -> None:
    async with BrokerAdmin.open(prepared.broker) as admin:
        overview = await admin._request("GET", "/overview")
    protocols = {(item["protocol"], item["port"]) for item in overview["listeners"]}
    assert {p for p, _ in protocols} <= {"amqp/ssl", "mqtt/ssl", "https", "clustering"}
    assert ("amqp/ssl", TLS_PORTS["amqps"]) in protocols
    assert ("mqtt/ssl", TLS_PORTS["mqtts"]) in protocols


@pytest.mark.skipif(not SECURE_PROFILE, reason="the dev profile adds plain listeners on purpose")
@pytest.mark.parametrize("port", DEV_PLAIN_PORTS.values(), ids=DEV_PLAIN_PORTS.keys())
def test_nothing_listens_on_the_dev_profile_plain_ports(port: int) -> None:
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=5).close()


def _plain_exchange(port: int, hello: bytes) -> bytes:
    """Speak a protocol in clear to a TLS port; whatever comes back before it hangs up."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(hello)
        received = b""
        try:
            while chunk := sock.recv(4096):
                received += chunk
        except (TimeoutError, ConnectionResetError):
            pass
    return received


def test_plain_amqp_to_the_tls_port_gets_no_amqp_answer() -> None:
    answer = _plain_exchange(TLS_PORTS["amqps"], b"AMQP\x00\x00\x09\x01")
    # An AMQP server answers the header with a Connection.Start frame (type 1); a TLS
    # server answers garbage with an alert record (type 21) or hangs up.
    assert not answer.startswith(b"\x01")
    assert answer[:1] in (b"", b"\x15")


def test_plain_mqtt_to_the_tls_port_gets_no_connack() -> None:
    client_id = b"plain-test"
    variable = b"\x00\x04MQTT\x04\x02\x00\x1e"  # MQTT 3.1.1, clean session, keepalive 30
    payload = len(client_id).to_bytes(2, "big") + client_id
    connect_packet = b"\x10" + bytes([len(variable) + len(payload)]) + variable + payload
    answer = _plain_exchange(TLS_PORTS["mqtts"], connect_packet)
    assert not answer.startswith(b"\x20")  # CONNACK
    assert answer[:1] in (b"", b"\x15")


async def test_plain_amqp_client_cannot_log_in(prepared: SetupSettings) -> None:
    plain = prepared.broker.model_copy(update={"tls": False})
    with pytest.raises((ConnectionError, OSError, aio_pika.exceptions.AMQPError)):
        await asyncio.wait_for(connect(plain), timeout=10)


async def test_a_client_that_does_not_trust_windparks_ca_fails(prepared: SetupSettings) -> None:
    system_trust = prepared.broker.model_copy(update={"ca_file": None})
    with pytest.raises(AMQPConnectionError, match="CERTIFICATE_VERIFY_FAILED") as refused:
        await connect(system_trust)
    assert isinstance(refused.value.__cause__, ssl.SSLCertVerificationError)


@pytest.mark.parametrize("port", TLS_PORTS.values(), ids=TLS_PORTS.keys())
def test_a_tls_client_with_only_the_system_cas_fails(port: int) -> None:
    # MQTT clients (paho) and HTTP clients wrap the same ssl module: a plain TLS client
    # stands for them without leaking their sockets on the failed handshake.
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as sock,
        pytest.raises(ssl.SSLCertVerificationError, match="self-signed certificate in"),
    ):
        ssl.create_default_context().wrap_socket(sock, server_hostname="localhost")


@pytest.mark.parametrize("port", TLS_PORTS.values(), ids=TLS_PORTS.keys())
def test_the_host_name_is_verified(port: int) -> None:
    context = BrokerSettings().ssl_context()
    assert context is not None
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as sock,
        pytest.raises(ssl.SSLCertVerificationError, match="Hostname mismatch"),
    ):
        context.wrap_socket(sock, server_hostname="not-the-broker.invalid")
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as sock,
        context.wrap_socket(sock, server_hostname="localhost") as tls,
    ):
        assert tls.version() in ("TLSv1.2", "TLSv1.3")


def _handshake(port: int, *, version: ssl.TLSVersion, ciphers: str = "DEFAULT") -> str:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    with warnings.catch_warnings():
        # TLS 1.0/1.1 are deprecated in Python too: here they are what we test.
        warnings.simplefilter("ignore", DeprecationWarning)
        context.minimum_version = version
        context.maximum_version = version
    # SECLEVEL=0 lets OpenSSL 3 offer TLS 1.0/1.1 at all: the refusal must be the server's.
    context.set_ciphers(f"{ciphers}:@SECLEVEL=0")
    context.load_verify_locations(str(BrokerSettings().ca_file))
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as sock,
        context.wrap_socket(sock, server_hostname="localhost") as tls,
    ):
        return str(tls.version())


@pytest.mark.parametrize("port", TLS_PORTS.values(), ids=TLS_PORTS.keys())
@pytest.mark.parametrize("version", ["TLSv1", "TLSv1_1"])
def test_tls_1_0_and_1_1_are_refused_by_the_server(port: int, version: str) -> None:
    with pytest.raises(ssl.SSLError) as refused:
        _handshake(port, version=ssl.TLSVersion[version])
    # An alert received from the server, not a protocol our own client would not offer.
    assert refused.value.reason == "TLSV1_ALERT_PROTOCOL_VERSION"


@pytest.mark.parametrize("port", TLS_PORTS.values(), ids=TLS_PORTS.keys())
def test_tls_1_2_needs_forward_secrecy_and_aead(port: int) -> None:
    assert _handshake(port, version=ssl.TLSVersion.TLSv1_2) == "TLSv1.2"
    assert _handshake(port, version=ssl.TLSVersion.TLSv1_3) == "TLSv1.3"
    with pytest.raises(ssl.SSLError) as refused:
        _handshake(port, version=ssl.TLSVersion.TLSv1_2, ciphers="ECDHE-ECDSA-AES128-SHA")
    assert refused.value.reason == "TLSV1_ALERT_INSUFFICIENT_SECURITY"


# MQTT -----------------------------------------------------------------------------------------


async def test_mqtt_publish_reaches_the_concentrator_queue(
    prepared: SetupSettings,
    amqp: AbstractRobustConnection,
    turbine_credentials: Credentials,
    other_turbine: Credentials,
) -> None:
    channel = await amqp.channel()
    await (await channel.declare_queue(contract.QUEUE, passive=True)).purge()
    await channel.close()
    broker = as_turbine(prepared, turbine_credentials)
    body = make_payload(turbine_id=turbine_credentials.user)
    async with mqtt_client(broker) as client:
        await client.publish(contract.mqtt_topic(turbine_credentials.user), body, qos=1)
    # Read as the concentrator's own identity, the one that consumes this queue.
    concentrator = await connect(prepared.broker.for_user(CONCENTRATOR_USER))
    try:
        queue = await (await concentrator.channel()).declare_queue(contract.QUEUE, passive=True)
        message = await queue.get(no_ack=True, fail=False, timeout=5)
        assert message is not None
        assert message.routing_key == contract.routing_key(turbine_credentials.user)
        assert message.exchange == contract.EXCHANGE
        assert message.body == body
        assert (message.headers or {}).get("x-mqtt-publish-qos") == 1
    finally:
        await concentrator.close()


async def test_mqtt_publish_to_another_turbines_topic_is_refused(
    prepared: SetupSettings,
    amqp: AbstractRobustConnection,
    turbine_credentials: Credentials,
    other_turbine: Credentials,
) -> None:
    admin_channel = await amqp.channel()
    other_tap = await tap(admin_channel, contract.routing_key(other_turbine.user))
    client = mqtt_client(as_turbine(prepared, turbine_credentials), timeout=3)
    async with client:
        # RabbitMQ 3.10 answers a refused MQTT 3.1.1 publish by closing the connection:
        # no PUBACK ever comes.
        with pytest.raises(aiomqtt.MqttError):
            await client.publish(contract.mqtt_topic(other_turbine.user), b"{}", qos=1)
    assert await other_tap.get(no_ack=True, fail=False) is None
    await admin_channel.close()


async def test_generator_over_mqtt_delivers_to_the_concentrator(
    prepared: SetupSettings,
    db_pool: asyncpg.Pool,
    turbine_id: str,
    turbine_credentials: Credentials,
) -> None:
    env = dict(os.environ, WINDPARK_INTERVAL_S="0.05", WINDPARK_ERROR_RATE="0")
    async with running_concentrator():
        generator = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "windpark",
            "generator",
            "--turbine-id",
            turbine_id,
            "--transport",
            "mqtt",
            "--count",
            "5",
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        output, _ = await asyncio.wait_for(generator.communicate(), timeout=60)
        assert generator.returncode == 0, output.decode()[-2000:]

        async def stored() -> bool:
            async with db_pool.acquire() as conn:
                sources = await conn.fetch(
                    "SELECT source FROM readings WHERE turbine_id = $1", turbine_id
                )
            return [r["source"] for r in sources] == ["mqtt"] * 5

        await eventually(stored)


# windpark turbines add ----------------------------------------------------------------------------


def _turbines_add(turbine_id: str, *extra: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "windpark", "turbines", "add", turbine_id, *extra],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def _password_in(output: str) -> str | None:
    match = re.search(r"^\s+password\s+(\S+)$", output, re.MULTILINE)
    return match.group(1) if match else None


async def test_turbines_add_provisions_a_working_identity(
    prepared: SetupSettings, db_pool: asyncpg.Pool
) -> None:
    turbine_id = new_turbine_id("A")
    try:
        output = await asyncio.to_thread(_turbines_add, turbine_id)
        password = _password_in(output)
        assert password is not None, output
        async with db_pool.acquire() as conn:
            assert await conn.fetchval("SELECT 1 FROM turbines WHERE turbine_id=$1", turbine_id)

        broker = as_user(prepared, turbine_id, password)
        connection = await connect(broker)
        try:
            channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
            exchange = await channel.get_exchange(contract.EXCHANGE, ensure=True)
            reading = make_payload(turbine_id=turbine_id)
            confirm = await exchange.publish(
                aio_pika.Message(reading),
                routing_key=contract.routing_key(turbine_id),
                mandatory=True,
            )
            assert isinstance(confirm, Basic.Ack)
            with pytest.raises(ChannelAccessRefused):
                await exchange.publish(
                    aio_pika.Message(reading), routing_key=contract.routing_key("WTG01")
                )
        finally:
            await connection.close()

        # Shown once: a second run leaves the password alone and does not print it.
        again = await asyncio.to_thread(_turbines_add, turbine_id)
        assert _password_in(again) is None
        assert password not in again
        await (await connect(broker)).close()

        rotated = _password_in(
            await asyncio.to_thread(_turbines_add, turbine_id, "--rotate-credentials")
        )
        assert rotated is not None
        assert rotated != password
        with pytest.raises(ProbableAuthenticationError):
            await connect(broker)
        await (await connect(as_user(prepared, turbine_id, rotated))).close()
    finally:
        async with BrokerAdmin.open(prepared.broker) as admin:
            await admin.delete_user(turbine_id)
        (prepared.broker.secrets_dir / turbine_id).unlink(missing_ok=True)


def test_reserved_identities_cannot_be_turbines() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "windpark", "turbines", "add", CONCENTRATOR_USER],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 2
    assert "reserved" in result.stdout
