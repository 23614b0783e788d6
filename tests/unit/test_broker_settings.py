"""Broker settings and the generator's turbine claim, without a broker."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
from aiormq.exceptions import AMQPConnectionError, ProbableAuthenticationError
from pydantic import SecretStr

from services.concentrator.config import Settings as ConcentratorSettings
from services.generator.transport import IdentityRefusedError, _unreachable, claim_turbine
from windpark.broker_admin import API_GRANT, TURBINE_GRANT, check_turbine_user
from windpark.settings import (
    DEFAULT_CA_FILE,
    BrokerConfigurationError,
    BrokerSettings,
    ConcentratorBrokerSettings,
)


def test_defaults_are_the_secure_broker() -> None:
    broker = BrokerSettings(user="x", password=SecretStr("y"))
    assert broker.url().startswith("amqps://x:y@localhost:5671/windpark?")
    assert broker.mqtt_port == 8883
    assert broker.ca_file == DEFAULT_CA_FILE
    # The system's CAs instead of windpark's: the same checks, no file needed here.
    context = broker.model_copy(update={"ca_file": None}).ssl_context()
    assert context is not None
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2


def test_the_password_comes_from_the_users_secret_file(tmp_path: Path) -> None:
    (tmp_path / "WTG07").write_text("s3cret\n")
    broker = BrokerSettings(secrets_dir=tmp_path).for_user("WTG07")
    assert broker.password_value() == "s3cret"
    assert broker.mqtt_username() == "windpark:WTG07"


def test_password_file_and_explicit_password_win(tmp_path: Path) -> None:
    (tmp_path / "WTG07").write_text("from-secrets")
    (tmp_path / "given").write_text("from-file")
    base = BrokerSettings(secrets_dir=tmp_path, password_file=tmp_path / "given")
    # A password given for no user in particular belongs to the one turbine asked for...
    assert base.for_user("WTG07").password_value() == "from-file"
    # ...but another user's password never leaks to a different identity.
    owned = base.model_copy(update={"user": "WTG01", "password": SecretStr("p1")})
    assert owned.for_user("WTG07").password_value() == "from-secrets"


def test_missing_user_or_password_fails_loudly(tmp_path: Path) -> None:
    with pytest.raises(BrokerConfigurationError, match="no broker user"):
        BrokerSettings().url()
    with pytest.raises(BrokerConfigurationError, match="WTG09"):
        BrokerSettings(secrets_dir=tmp_path, user="WTG09").url()
    (tmp_path / "WTG09").write_text("  \n")
    with pytest.raises(BrokerConfigurationError, match="empty"):
        BrokerSettings(secrets_dir=tmp_path, user="WTG09").url()


def test_a_service_keeps_its_identity_when_the_environment_sets_other_fields(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("WINDPARK_BROKER__VHOST", "elsewhere")
    broker = ConcentratorSettings().broker
    assert isinstance(broker, ConcentratorBrokerSettings)
    assert (broker.user, broker.vhost) == ("concentrator", "elsewhere")


def test_credentials_with_reserved_characters_are_quoted() -> None:
    broker = BrokerSettings(user="a@b", password=SecretStr("p:/?#"), vhost="windpark-test")
    assert broker.url().startswith("amqps://a%40b:p%3A%2F%3F%23@localhost:5671/windpark-test?")


@pytest.mark.parametrize("name", ["windpark-admin", "concentrator", "api", "guest", "a.b", ""])
def test_reserved_or_malformed_turbine_identities_are_refused(name: str) -> None:
    with pytest.raises(ValueError, match=r"reserved|invalid"):
        check_turbine_user(name)


def test_topic_permissions_pin_the_routing_key() -> None:
    assert TURBINE_GRANT.topic_write == r"^telemetry\.{username}$"
    assert TURBINE_GRANT.configure == TURBINE_GRANT.read == "^$"
    assert API_GRANT.topic_write == r"^telemetry\.[A-Za-z0-9_-]{1,64}$"


async def test_claim_takes_the_first_turbine_the_broker_accepts() -> None:
    taken = {"WTG01", "WTG03"}
    tried: list[str] = []

    async def connect(turbine_id: str) -> str:
        tried.append(turbine_id)
        if turbine_id in taken:
            raise IdentityRefusedError(turbine_id)
        if turbine_id == "WTG02":
            raise ProbableAuthenticationError("ACCESS_REFUSED")
        return f"connection of {turbine_id}"

    assert await claim_turbine(["WTG01", "WTG02", "WTG03", "WTG04"], connect) == (
        "WTG04",
        "connection of WTG04",
    )
    assert tried == ["WTG01", "WTG02", "WTG03", "WTG04"]
    taken.add("WTG04")
    with pytest.raises(RuntimeError, match="no free turbine identity among 4"):
        await claim_turbine(["WTG01", "WTG02", "WTG03", "WTG04"], connect)


def test_only_an_unreachable_broker_is_worth_waiting_for() -> None:
    assert _unreachable(AMQPConnectionError(111, "Connect call failed"))
    assert _unreachable(ConnectionRefusedError())
    assert not _unreachable(ProbableAuthenticationError("ACCESS_REFUSED"))
    untrusted = AMQPConnectionError(1, "[SSL: CERTIFICATE_VERIFY_FAILED]")
    untrusted.__cause__ = ssl.SSLCertVerificationError()
    assert not _unreachable(untrusted)
    assert not _unreachable(IdentityRefusedError("WTG01"))
