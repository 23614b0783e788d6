"""docker-compose.yml cannot run on this machine (no Docker engine): keep it honest by parsing it.

It must start what `make run` starts, with the same `windpark` subcommands, the same
settings names, and the ordering promises (a one-shot migrate that the services wait on).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from services.aggregator.config import Settings as ApiSettings
from services.concentrator.config import Settings as ConcentratorSettings
from services.generator.config import Settings as GeneratorSettings
from windpark.bootstrap import SetupSettings
from windpark.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert isinstance(data, dict)
    return data


def _command(compose: dict[str, Any], service: str) -> list[str]:
    spec = compose["services"][service]
    if "command" in spec:
        return list(spec["command"])
    dockerfile = (ROOT / spec["build"]["dockerfile"]).read_text()
    match = re.search(r"^CMD (\[.*\])$", dockerfile, re.MULTILINE)
    assert match, f"{service}: no CMD in its Dockerfile"
    return list(yaml.safe_load(match.group(1)))


def test_every_service_of_make_run_is_in_compose(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert {"timescaledb", "rabbitmq", "migrate", "generator", "concentrator", "aggregator"} <= set(
        services
    )
    assert _command(compose, "migrate")[:2] == ["windpark", "setup"]
    assert _command(compose, "generator")[:2] == ["windpark", "generator"]
    assert _command(compose, "concentrator")[:2] == ["windpark", "concentrator"]
    assert _command(compose, "aggregator")[:2] == ["windpark", "api"]


@pytest.mark.parametrize("service", ["migrate", "generator", "concentrator", "aggregator"])
def test_commands_parse_with_the_windpark_cli(compose: dict[str, Any], service: str) -> None:
    args = build_parser().parse_args(_command(compose, service)[1:])
    assert callable(args.handler)


@pytest.mark.parametrize("service", ["generator", "concentrator", "aggregator"])
def test_services_wait_for_the_one_shot_migration(compose: dict[str, Any], service: str) -> None:
    depends = compose["services"][service]["depends_on"]
    assert depends["migrate"]["condition"] == "service_completed_successfully"


def test_migrate_waits_for_healthy_database_and_broker(compose: dict[str, Any]) -> None:
    depends = compose["services"]["migrate"]["depends_on"]
    assert depends["timescaledb"]["condition"] == "service_healthy"
    assert depends["rabbitmq"]["condition"] == "service_healthy"
    for name in ("timescaledb", "rabbitmq"):
        assert "healthcheck" in compose["services"][name]


def test_secrets_are_required_not_defaulted(compose: dict[str, Any]) -> None:
    text = (ROOT / "docker-compose.yml").read_text()
    for variable in re.findall(r"\$\{(\w*PASSWORD\w*)([^}]*)\}", text):
        name, rest = variable
        assert rest.startswith("?"), f"{name} must be required (${{{name}?...}}), not defaulted"


def test_generator_scales_to_distinct_turbines(compose: dict[str, Any]) -> None:
    generator = compose["services"]["generator"]
    assert "container_name" not in generator  # --scale needs unnamed containers
    assert "ports" not in generator
    env = generator["environment"]
    assert str(env["WINDPARK_CLAIM_TURBINE"]).lower() == "true"


def _env_names(settings_cls: type[Any], prefix: str = "WINDPARK_") -> set[str]:
    names = set()
    for name, field in settings_cls.model_fields.items():
        annotation = field.annotation
        sub = getattr(annotation, "model_fields", None)
        if sub:
            names |= {f"{prefix}{name.upper()}__{s.upper()}" for s in sub}
        else:
            names.add(f"{prefix}{name.upper()}")
    return names


@pytest.mark.parametrize(
    ("service", "settings_cls"),
    [
        ("migrate", SetupSettings),
        ("generator", GeneratorSettings),
        ("concentrator", ConcentratorSettings),
        ("aggregator", ApiSettings),
    ],
)
def test_every_windpark_variable_names_a_real_setting(
    compose: dict[str, Any], service: str, settings_cls: type[Any]
) -> None:
    env = compose["services"][service]["environment"]
    known = _env_names(settings_cls)
    unknown = {k for k in env if k.startswith("WINDPARK_") and k not in known}
    assert not unknown, f"{service}: settings that no field reads: {unknown}"


def test_the_api_signing_key_is_required_not_defaulted(compose: dict[str, Any]) -> None:
    env = compose["services"]["aggregator"]["environment"]
    assert env["WINDPARK_API__JWT_KEY"] == "${WINDPARK_JWT_KEY?Variable not set}"
