"""Exception handlers: one error shape, no submitted values echoed, database outages as 503 + Retry-After."""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException

from features.errors import PolkuError

logger = logging.getLogger(__name__)

# Quoted or parenthesised fragments of validator messages may repeat what was submitted: drop them.
_QUOTED = re.compile(r"""\s*(?:'[^']*'|"[^"]*"|\([^)]*\))""")
_SAFE_TYPES_WITH_INPUT_FREE_MESSAGES = frozenset(
    {
        "missing",
        "extra_forbidden",
        "string_type",
        "int_type",
        "float_type",
        "bool_type",
        "list_type",
        "dict_type",
        "tuple_type",
        "model_type",
        "model_attributes_type",
        "date_type",
        "datetime_type",
        "string_pattern_mismatch",
        "string_too_short",
        "string_too_long",
        "too_short",
        "too_long",
        "greater_than",
        "greater_than_equal",
        "less_than",
        "less_than_equal",
        "literal_error",
        "union_tag_invalid",
        "union_tag_not_found",
        "int_parsing",
        "float_parsing",
        "date_parsing",
        "date_from_datetime_parsing",
        "datetime_parsing",
        "datetime_from_date_parsing",
        "json_invalid",
        "json_type",
        "finite_number",
        "int_from_float",
        "bool_parsing",
    }
)


class ServiceUnavailable(Exception):
    """A dependency (database, model) is unavailable; answered with 503 and ``Retry-After``."""

    def __init__(self, reason: str, retry_after_s: int = 5) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after_s = retry_after_s


class FieldError(Exception):
    """A 4xx about one field of the request (answered as ``{"errors": [{"field", "reason"}]}``)."""

    def __init__(self, field: str, reason: str, status_code: int = 422) -> None:
        super().__init__(reason)
        self.field = field
        self.reason = reason
        self.status_code = status_code


def error_body(reason: str, field: str | None = None) -> dict[str, list[dict[str, str | None]]]:
    """The error envelope ``{"errors": [{"field": ..., "reason": ...}]}``."""
    return {"errors": [{"field": field, "reason": reason}]}


def _location(loc: Sequence[Any]) -> str:
    return ".".join(str(part) for part in loc)


def safe_reason(error: dict[str, Any]) -> str:
    """The message of one pydantic error without any submitted value."""
    msg = str(error.get("msg", "invalid value"))
    if error.get("type") in _SAFE_TYPES_WITH_INPUT_FREE_MESSAGES:
        return msg
    cleaned = _QUOTED.sub("", msg).strip(" :,")
    return re.sub(r"\s{2,}", " ", cleaned) or "invalid value"


def validation_errors(errors: Sequence[Any], prefix: Sequence[str] = ()) -> list[dict[str, str | None]]:
    """Convert pydantic/FastAPI errors into ``[{field, reason}]`` (no ``input``, no ``ctx``)."""
    out: list[dict[str, str | None]] = []
    for err in errors:
        loc = [*prefix, *err.get("loc", ())]
        out.append({"field": _location(loc) or None, "reason": safe_reason(err)})
    return out


def _retry_after(request: Request) -> int:
    settings = getattr(request.app.state, "settings", None)
    return int(getattr(settings, "db_retry_after_s", 5))


async def _on_request_validation(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return JSONResponse({"errors": validation_errors(exc.errors())}, status_code=422)


async def _on_pydantic_validation(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ValidationError)
    return JSONResponse({"errors": validation_errors(exc.errors(include_url=False, include_input=False))}, 422)


def _allowed_methods(request: Request) -> str | None:
    """Every method any route offers on this path (Starlette only names the first matching route's)."""
    from starlette.routing import Match

    methods: set[str] = set()
    for route in request.app.routes:
        match, _ = route.matches({**request.scope, "method": "GET"}) if hasattr(route, "matches") else (None, None)
        route_methods = getattr(route, "methods", None)
        if match in (Match.FULL, Match.PARTIAL) and route_methods:
            methods |= set(route_methods)
    return ", ".join(sorted(methods)) if methods else None


async def _on_http(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    headers = dict(exc.headers or {})
    if exc.status_code == 405:
        allowed = _allowed_methods(request)
        if allowed:
            headers["Allow"] = allowed
    return JSONResponse(error_body(str(exc.detail)), status_code=exc.status_code, headers=headers)


async def _on_db_down(request: Request, exc: Exception) -> JSONResponse:
    logger.warning("database unavailable on %s %s: %s", request.method, request.url.path, type(exc).__name__)
    retry = _retry_after(request)
    return JSONResponse(
        error_body("database unavailable, retry later"), status_code=503, headers={"Retry-After": str(retry)}
    )


async def _on_unavailable(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ServiceUnavailable)
    return JSONResponse(error_body(exc.reason), status_code=503, headers={"Retry-After": str(exc.retry_after_s)})


async def _on_field(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, FieldError)
    return JSONResponse(error_body(exc.reason, exc.field), status_code=exc.status_code)


async def _on_domain(_request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse(error_body(_QUOTED.sub("", str(exc)).strip() or "invalid input"), status_code=422)


async def _on_unexpected(request: Request, exc: Exception) -> JSONResponse:
    # Only the type: messages of arbitrary exceptions may carry profile values.
    logger.error("unhandled %s on %s %s", type(exc).__name__, request.method, request.url.path)
    return JSONResponse(error_body("internal error"), status_code=500)


def install_error_handlers(app: FastAPI) -> None:
    """Register every exception handler of the service in one place."""
    app.add_exception_handler(RequestValidationError, _on_request_validation)
    app.add_exception_handler(ValidationError, _on_pydantic_validation)
    app.add_exception_handler(StarletteHTTPException, _on_http)
    app.add_exception_handler(OperationalError, _on_db_down)
    app.add_exception_handler(PoolTimeoutError, _on_db_down)
    app.add_exception_handler(DBAPIError, _on_db_down)
    app.add_exception_handler(ServiceUnavailable, _on_unavailable)
    app.add_exception_handler(FieldError, _on_field)
    app.add_exception_handler(PolkuError, _on_domain)
    app.add_exception_handler(Exception, _on_unexpected)
