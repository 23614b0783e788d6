"""schemathesis against the API's own OpenAPI document, through the ASGI app, on the real
test database and broker: generated requests (valid and not) with a real admin token
must never get a server error, every answer must match the document, and every
protected operation must refuse the same request without a token or with a wrong one
(``ignored_auth``)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import asyncpg
import httpx
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
from tests.conftest import broker_settled, create_api_client, request_token
from tests.integration.test_api_reads import with_lifespan_state
from windpark.bootstrap import SetupSettings
from windpark.credentials import Scope

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
