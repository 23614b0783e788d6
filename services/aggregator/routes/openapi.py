"""OpenAPI pieces the routes share."""

from __future__ import annotations

import copy
from typing import Any, Final

from fastapi import FastAPI

from services.aggregator import schemas
from windpark import contract


def _inline_refs(schema: dict[str, Any]) -> dict[str, Any]:
    """The reading's JSON schema with its ``$defs`` inlined, so it stands alone in OpenAPI."""
    defs = schema.pop("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                return resolve(defs[ref.removeprefix("#/$defs/")])
            return {key: resolve(value) for key, value in node.items()}
        if isinstance(node, list):
            return [resolve(item) for item in node]
        return node

    resolved: dict[str, Any] = resolve(schema)
    return resolved


_EXAMPLE: Final = {
    "v": 1,
    "turbine_id": "WTG01",
    "ts": "2026-11-28T18:00:00.000Z",
    "seq": 42,
    "power_kw": 1234.5,
    "wind_speed_ms": 9.8,
    "temperature_c": 11.2,
    "state": "running",
}

# The POST routes read the raw body themselves (to count its bytes and to publish the
# exact bytes received); this puts the wire contract back into the docs.
READING_BODY: Final[dict[str, Any]] = {
    "requestBody": {
        "required": True,
        "description": "One reading as on the wire (windpark.contract.Reading, version 1).",
        "content": {
            contract.CONTENT_TYPE: {
                "schema": _inline_refs(contract.Reading.model_json_schema()),
                "example": _EXAMPLE,
            }
        },
    }
}


def keep_exact_reading_body(app: FastAPI) -> None:
    """Serve READING_BODY as written in every operation that declares it.

    FastAPI validates the document through its OpenAPI models, whose ``minimum`` and
    ``maximum`` are floats: ``seq``'s maximum 2^63-1 became 9.223372036854776e18, which is
    2^63, so the document allowed a seq the validator refuses. Putting the contract's
    schema back after generation keeps its integers exact.
    """
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = generate()
        for operations in schema["paths"].values():
            for operation in operations.values():
                body = operation.get("requestBody", {})
                if body.get("description") == READING_BODY["requestBody"]["description"]:
                    operation["requestBody"] = copy.deepcopy(READING_BODY["requestBody"])
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


POST_RESPONSES: Final[dict[int | str, dict[str, Any]]] = {
    202: {"model": schemas.Queued, "description": "valid; handed to the broker (confirmed)"},
    413: {"model": schemas.ErrorAnswer, "description": "body larger than max_body_bytes"},
    415: {"model": schemas.ErrorAnswer, "description": "Content-Type is not application/json"},
    422: {
        "model": schemas.RejectedAnswer,
        "description": "rejected by the validator; kept in rejected_readings with its reasons",
    },
    503: {
        "model": schemas.ErrorAnswer,
        "description": "broker (or database) unavailable; see Retry-After",
    },
}

NOT_FOUND: Final[dict[int | str, dict[str, Any]]] = {
    404: {"model": schemas.ErrorAnswer, "description": "turbine not registered"}
}
