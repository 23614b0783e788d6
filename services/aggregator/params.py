"""Query parameters shared by the routes: RFC 3339 instants with an offset, time zones, buckets."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Final

from fastapi import HTTPException, Query
from pydantic import AfterValidator, BeforeValidator, WithJsonSchema

from services.aggregator.buckets import WindowError

_RFC3339: Final = re.compile(
    r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d{1,9})?(?P<offset>[Zz]|[+-]\d{2}:\d{2})?$"
)
# In a query string an unescaped "+" arrives as a space: "...T10:00:00 01:00" was meant
# as "+01:00". Nothing else can end that way, so it is read back as "+".
_SPACE_OFFSET: Final = re.compile(r" (\d{2}:\d{2})$")


def parse_instant(value: Any) -> datetime:
    """An RFC 3339 date-time with an explicit offset; naive or other forms are refused."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("naive date-time: add an offset (Z or +HH:MM)")
        return value
    if not isinstance(value, str):
        # pydantic turns only ValueError into a validation error (a 422, not a 500).
        raise ValueError("expected an RFC 3339 date-time string")  # noqa: TRY004
    text = _SPACE_OFFSET.sub(r"+\1", value.strip())
    match = _RFC3339.match(text)
    if match is None:
        raise ValueError("expected an RFC 3339 date-time such as 2026-03-29T00:00:00+01:00")
    if match["offset"] is None:
        raise ValueError("naive date-time: add an offset (Z or +HH:MM)")
    fraction = match[1]
    if fraction and len(fraction) > 7:  # Python keeps microseconds: drop the rest
        text = text.replace(fraction, fraction[:7], 1)
    return datetime.fromisoformat(text.replace("z", "Z"))


Instant = Annotated[
    datetime,
    BeforeValidator(parse_instant),
    WithJsonSchema({"type": "string", "format": "date-time"}),
]


# Row ids are bigint: a larger cursor would reach PostgreSQL and fail there (a 500).
MAX_ID_CURSOR: Final = 2**63 - 1


def check_id_cursor(value: str | None) -> str | None:
    """A ``next_cursor`` of a page keyed by a bigint id: at most 2^63 - 1 (the pattern
    below already makes it 1-19 digits)."""
    if value is not None and int(value) > MAX_ID_CURSOR:
        raise ValueError(f"cursor too large: at most {MAX_ID_CURSOR}, as next_cursor gives")
    return value


IdCursor = Annotated[
    str | None,
    Query(
        pattern=r"^\d{1,19}$",
        description=f"next_cursor of the previous page: digits, at most {MAX_ID_CURSOR}"
        " (422 otherwise)",
    ),
    AfterValidator(check_id_cursor),
]


def query_error(param: str, message: str, kind: str) -> HTTPException:
    """A 422 shaped like FastAPI's own validation errors, so clients parse one shape."""
    return HTTPException(
        status_code=422, detail=[{"type": kind, "loc": ["query", param], "msg": message}]
    )


def window_error(exc: WindowError, names: dict[str, str] | None = None) -> HTTPException:
    """A WindowError as a 422; ``names`` maps generic parameter names to the route's."""
    param = (names or {}).get(exc.param, exc.param)
    return query_error(param, exc.message, exc.kind)
