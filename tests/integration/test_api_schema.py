"""schemathesis against the API's own OpenAPI document, through the ASGI app, on the real
test database and broker: generated requests (valid and not) with a real admin token
must never get a server error, every answer must match the document, and every
protected operation must refuse the same request without a token or with a wrong one
(``ignored_auth``)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any, Final

import asyncpg
import httpx
import jsonschema_rs
import orjson
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import Case, GenerationMode
from schemathesis.checks import CheckFunction
from schemathesis.core.failures import FailureGroup
from schemathesis.core.result import Ok
from schemathesis.python import asgi as schemathesis_asgi
from schemathesis.specs.openapi.checks import negative_data_rejection, positive_data_acceptance
from schemathesis.specs.openapi.schemas import OpenApiSchema

from services.aggregator.app import create_app
from services.aggregator.config import Settings
from tests.conftest import broker_settled, create_api_client, request_token, with_lifespan_state
from tests.factories import make_payload
from windpark import contract
from windpark.bootstrap import SetupSettings
from windpark.credentials import Scope
from windpark.validation.decoding import decode
from windpark.validation.limits import Limits

# Generated cases per operation: enough to reach the error paths of every parameter,
# small enough for the whole run to stay well under a minute.
MAX_EXAMPLES = 20
# Checks that expect the OpenAPI document to be the whole contract. This API checks more
# than its schema says (the points cap, `from` before `to`, a known time zone, a
# registered turbine): a schema-valid request may rightly answer 422 or 404, and an
# unknown query parameter is ignored rather than refused.
EXCLUDED_CHECKS: list[CheckFunction] = [positive_data_acceptance, negative_data_rejection]


@pytest.fixture(scope="module")
async def admin_token(prepared: SetupSettings, db_pool: asyncpg.Pool) -> str:
    """A token from POST /v1/token for a real admin client of the test database."""
    app = create_app(Settings())
    async with app.router.lifespan_context(app) as state:
        await broker_settled(state)
        transport = httpx.ASGITransport(app=with_lifespan_state(app, state))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            return await request_token(http, await create_api_client(db_pool, Scope.ADMIN))


@pytest.fixture(scope="module")
def api_schema(admin_token: str) -> Iterator[OpenApiSchema]:
    # schemathesis runs the app's lifespan itself (database pool, broker link) and
    # calls it in-process; the lifespan is shut down when the module is done.
    schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(Settings()))
    yield schema
    schemathesis_asgi.shutdown_lifespans()


def _run(operation: Any, mode: GenerationMode, token: str) -> None:
    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        database=None,
        # No shrinking: a failure is reported as found, and the run stays bounded.
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    def check(case: Case[Any]) -> None:
        case.call_and_validate(
            headers={"Authorization": f"Bearer {token}"}, excluded_checks=EXCLUDED_CHECKS
        )

    check()


def test_api_conforms_to_its_schema_and_enforces_auth(
    api_schema: OpenApiSchema, admin_token: str
) -> None:
    # (schemathesis' own pytest integration for lazily loaded schemas does not run on
    # pytest 9, hence a loop over the operations.)
    operations = []
    for result in api_schema.get_all_operations():
        assert isinstance(result, Ok), result  # an operation the schema cannot describe
        operations.append(result.ok())
    assert len(operations) >= 12
    failures = []
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            try:
                _run(operation, mode, admin_token)
            except Unsatisfiable:
                # Nothing to negate: the operation takes no parameters and no body.
                if mode is not GenerationMode.NEGATIVE:
                    raise
            # Every operation runs; all failures are reported (a FailureGroup is a
            # BaseExceptionGroup, not an Exception).
            except (Exception, FailureGroup) as exc:
                failures.append(f"{operation.label} ({mode.value}):\n{exc}")
    if failures:
        pytest.fail(f"{len(failures)} failing runs:\n\n" + "\n\n".join(failures))


async def test_a_nul_in_a_text_parameter_is_refused_not_a_server_error(
    admin_token: str,
) -> None:
    # What schemathesis found first: PostgreSQL text cannot hold NUL.
    app = create_app(Settings())
    async with app.router.lifespan_context(app) as state:
        await broker_settled(state)
        transport = httpx.ASGITransport(app=with_lifespan_state(app, state))
        async with httpx.AsyncClient(
            transport=transport,
            base_url="http://testserver",
            headers={"Authorization": f"Bearer {admin_token}"},
        ) as http:
            for path, params in (
                ("/v1/rejects", {"turbine_id": "a\x00b"}),
                ("/agregados/", {"generador": "a\x00b"}),
            ):
                answer = await http.get(path, params=params)
                assert answer.status_code == 422, (path, answer.text)


# The reading body: the schema says what the validator does ------------------------------------

# One value of each JSON type: the schema decides which a field takes.
JSON_SAMPLES: Final[dict[str, Any]] = {
    "string": "x",
    "integer": 7,
    "number": 7.5,
    "boolean": True,
    "null": None,
    "array": [],
    "object": {},
}
# Strings for a field with a pattern: both ends of the length, and the characters the
# pattern refuses (a trailing newline included, which Python's `$` would let through).
PATTERN_SAMPLES: Final = ("", "A", "A" * 64, "A" * 65, "WTG 01", "WTG01\n", "WTG/01", "é")
DATE_TIME_SAMPLES: Final = (
    "2026-11-28T18:00:00Z",
    "2026-11-28T18:00:00.123+01:00",
    "2026-11-28T18:00:00",  # no offset
    "2026-11-28",
    "2026-13-28T18:00:00Z",
    "yesterday",
)


def _body_cases(body: dict[str, Any], valid: dict[str, Any]) -> Iterator[tuple[str, bytes]]:
    """Cases derived from the body's schema: each field absent, of each JSON type, and at
    and past each bound the schema states (minimum, maximum, const, enum, pattern, format)."""

    def changed(name: str, value: Any) -> bytes:
        return json.dumps({**valid, name: value}).encode()

    yield "valid", json.dumps(valid).encode()
    yield "unknown field", changed("unknown_field", 1)
    for name, field in body["properties"].items():
        yield f"{name} absent", json.dumps({k: v for k, v in valid.items() if k != name}).encode()
        for kind, value in JSON_SAMPLES.items():
            yield f"{name} {kind}", changed(name, value)
        for alternative in field.get("anyOf", [field]):
            for key, step in (("minimum", -1), ("maximum", 1)):
                if key in alternative:
                    bound = alternative[key]
                    yield f"{name} {key}", changed(name, bound)
                    yield f"{name} past {key}", changed(name, bound + step)
            if "const" in alternative:
                yield f"{name} const", changed(name, alternative["const"])
                yield f"{name} not const", changed(name, alternative["const"] + 1)
            for member in alternative.get("enum", ()):
                yield f"{name} {member}", changed(name, member)
                yield f"{name} {member.upper()}", changed(name, member.upper())
            if "pattern" in alternative:
                for sample in PATTERN_SAMPLES:
                    yield f"{name} {sample!r}", changed(name, sample)
            if alternative.get("format") == "date-time":
                for sample in DATE_TIME_SAMPLES:
                    yield f"{name} {sample!r}", changed(name, sample)


async def test_the_reading_schema_says_what_the_validator_does(prepared: SetupSettings) -> None:
    app = create_app(Settings())
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        document = (await http.get("/openapi.json")).json()
    bodies = [
        operation["requestBody"]["content"][contract.CONTENT_TYPE]["schema"]
        for path in ("/generador/", "/v1/readings")
        for operation in (document["paths"][path]["post"],)
    ]
    assert bodies[0] == bodies[1]
    body = bodies[0]
    schema_says = jsonschema_rs.Draft202012Validator(body, validate_formats=True)
    valid = orjson.loads(make_payload())
    disagreements = []
    cases = 0
    for label, raw in _body_cases(body, valid):
        cases += 1
        decoded = decode(raw, Limits())
        accepted = not decoded.reasons
        if schema_says.is_valid(json.loads(raw)) != accepted:
            reasons = [r.code.value for r in decoded.reasons]
            disagreements.append(f"{label}: schema valid={not accepted}, validator {reasons}")
    # Every field of the body was tried, with its bounds.
    assert cases > 12 * len(JSON_SAMPLES)
    assert not disagreements, "\n".join(disagreements)
