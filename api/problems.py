"""One error body for every 4xx and 5xx: RFC 9457 problem details.

Every error the API answers is ``application/problem+json`` with ``type``, ``title``,
``status``, ``detail`` and ``instance``; validation errors add ``errors`` (where and why
each input was rejected). The handlers here turn FastAPI/Starlette exceptions, database
outages and any unexpected exception into that shape; ``ERROR_RESPONSES`` documents it
in OpenAPI once for every operation.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from http import HTTPStatus
from typing import Any, TypeVar

import psycopg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from psycopg_pool import PoolTimeout
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from store.registry import RegistryError

log = logging.getLogger("chargeflow.api.errors")
T = TypeVar("T")

PROBLEM_JSON = "application/problem+json"
# The problem types this API defines; `about:blank` means "see the status code".
TYPE_BLANK = "about:blank"
TYPE_VALIDATION = "urn:chargeflow:problem:validation"
TYPE_RATE_LIMITED = "urn:chargeflow:problem:auth-rate-limited"
TYPE_DATABASE_UNAVAILABLE = "urn:chargeflow:problem:database-unavailable"
TYPE_INTERNAL = "urn:chargeflow:problem:internal"
TYPE_NOT_READY = "urn:chargeflow:problem:not-ready"
# Commands: the Idempotency-Key names another request; the station's OCPP version is not
# known (it never connected), so no command can be built for it.
TYPE_IDEMPOTENCY_KEY_REUSED = "urn:chargeflow:problem:idempotency-key-reused"
TYPE_OCPP_VERSION_UNKNOWN = "urn:chargeflow:problem:ocpp-version-unknown"


class InvalidParam(BaseModel):
    location: str = Field(description="query, path or header")
    name: str = Field(description="The parameter's name as sent (e.g. `from`)")
    reason: str = Field(description="Why the value was rejected")


class Problem(BaseModel):
    """RFC 9457 problem details."""

    type: str = Field(TYPE_BLANK, description="URI of the problem type; about:blank = the status")
    title: str = Field(description="Short summary of the problem type")
    status: int = Field(ge=400, le=599, description="The HTTP status code")
    detail: str = Field(description="What went wrong in this request, for humans")
    instance: str = Field(description="The request path (without the query string)")
    errors: list[InvalidParam] | None = Field(
        default=None, description="Validation problems: one entry per rejected input"
    )


class ProblemError(StarletteHTTPException):
    """An HTTP error with a problem type of its own (else ``about:blank``)."""

    def __init__(
        self,
        status_code: int,
        detail: str,
        *,
        type_: str = TYPE_BLANK,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(status_code, detail, dict(headers) if headers else None)
        self.problem_type = type_


class NotReadyProblem(Problem):
    """503 from the readiness check: problem details plus what was checked."""

    database: str = Field(description="The reason the database check failed")
    broker: str = Field(description='For information only: "ok", "disabled" or the failure reason')


def problem_response(
    request: Request,
    status: int,
    detail: str,
    *,
    type_: str = TYPE_BLANK,
    errors: Sequence[InvalidParam] | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    problem = Problem(
        type=type_,
        title=HTTPStatus(status).phrase,
        status=status,
        detail=detail,
        instance=request_path(request.scope),
        errors=list(errors) if errors is not None else None,
    )
    return JSONResponse(
        problem.model_dump(exclude_none=True),
        status_code=status,
        headers=headers,
        media_type=PROBLEM_JSON,
    )


def request_path(scope: Mapping[str, Any]) -> str:
    """The path as the client sent it (still percent-encoded), without the query."""
    raw = scope.get("raw_path")
    return raw.decode("latin-1") if isinstance(raw, bytes) else str(scope.get("path", ""))


def _invalid_params(exc: RequestValidationError) -> list[InvalidParam]:
    params = []
    for error in exc.errors():
        loc = [str(part) for part in error.get("loc", ())]
        location = loc[0] if loc else "request"
        name = ".".join(loc[1:]) or location
        # Only the message: the rejected input is left out so nothing sent (a key, a
        # control character) is echoed back.
        params.append(InvalidParam(location=location, name=name, reason=str(error["msg"])))
    return params


async def _http_exception(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    detail = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).phrase
    problem_type = exc.problem_type if isinstance(exc, ProblemError) else TYPE_BLANK
    headers = exc.headers
    if exc.status_code == 405:
        headers = {**(headers or {}), "Allow": allowed_methods(request)}
    return problem_response(request, exc.status_code, detail, type_=problem_type, headers=headers)


def allowed_methods(request: Request) -> str:
    """Every method the request's path answers: Starlette's 405 lists only those of the
    first route whose path matched, and one path may have a route per method (GET and
    POST /v1/tariffs)."""
    methods: set[str] = set()
    for route in request.app.router.routes:
        match, _ = route.matches(request.scope)
        if match is not Match.NONE:
            methods.update(getattr(route, "methods", None) or ())
    return ", ".join(sorted(methods))


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = _invalid_params(exc)
    names = ", ".join(sorted({e.name for e in errors}))
    return problem_response(
        request,
        422,
        f"invalid request parameters: {names}",
        type_=TYPE_VALIDATION,
        errors=errors,
    )


async def _database_unavailable(request: Request, exc: Exception) -> JSONResponse:
    log.warning("database unavailable for %s: %s", request.url.path, type(exc).__name__)
    return problem_response(
        request,
        503,
        "database unavailable",
        type_=TYPE_DATABASE_UNAVAILABLE,
        headers={"Retry-After": "5"},
    )


def install_problem_handlers(app: FastAPI) -> None:
    app.add_exception_handler(StarletteHTTPException, _http_exception)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(PoolTimeout, _database_unavailable)
    app.add_exception_handler(psycopg.OperationalError, _database_unavailable)


def log_unexpected(request_path: str, exc: BaseException) -> None:
    """Log an unexpected exception with its traceback, without the query string; the log
    configuration (runtime.logs) renders tracebacks without local variables, which can
    hold keys and credentials, in both formats."""
    log.error(
        "unhandled %s while serving %s",
        type(exc).__name__,
        request_path,
        exc_info=(type(exc), exc, exc.__traceback__),
    )


def internal_error_body(path: str) -> bytes:
    return (
        Problem(
            type=TYPE_INTERNAL,
            title=HTTPStatus(500).phrase,
            status=500,
            detail="internal error; it has been logged",
            instance=path,
        )
        .model_dump_json(exclude_none=True)
        .encode()
    )


def _problem(
    description: str, headers: Mapping[str, Any] | None = None, schema: str = "Problem"
) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": description,
        "content": {PROBLEM_JSON: {"schema": {"$ref": f"#/components/schemas/{schema}"}}},
    }
    if headers:
        response["headers"] = dict(headers)
    return response


_RETRY_AFTER = {
    "Retry-After": {
        "description": "Seconds to wait before trying again",
        "schema": {"type": "string"},
    }
}
_WWW_AUTHENTICATE = {
    "WWW-Authenticate": {
        "description": "The accepted authentication schemes",
        "schema": {"type": "string"},
    }
}

Responses = dict[int | str, dict[str, Any]]

# Shared OpenAPI response definitions; routes pick them with `responses=...`.
UNAUTHORIZED: Responses = {401: _problem("Missing, invalid or revoked API key", _WWW_AUTHENTICATE)}
FORBIDDEN: Responses = {403: _problem("The key's role may not do this")}
NOT_FOUND: Responses = {404: _problem("No such resource")}
CONFLICT: Responses = {409: _problem("Not possible in the resource's current state")}
# Operations with a JSON body: FastAPI answers 400 for a body it cannot decode (not
# UTF-8); a body that decodes but is not valid JSON or not the schema is a 422.
UNREADABLE_BODY: Responses = {400: _problem("The body cannot be decoded (not UTF-8)")}
RATE_LIMITED: Responses = {
    429: _problem("Too many failed authentications from this client address", _RETRY_AFTER)
}
SERVICE_UNAVAILABLE: Responses = {503: _problem("The database is unavailable", _RETRY_AFTER)}
NOT_READY: Responses = {
    503: _problem(
        "The database does not answer within the health timeout",
        _RETRY_AFTER,
        schema="NotReadyProblem",
    )
}
# Every operation: validation, method, internal errors.
COMMON: Responses = {
    405: _problem("Method not allowed"),
    422: _problem("Invalid parameters (`errors` says which and why)"),
    500: _problem("Unexpected internal error (logged; no details in the body)"),
}
# Operations that need an API key and the database.
AUTHENTICATED: Responses = {**UNAUTHORIZED, **FORBIDDEN, **RATE_LIMITED, **SERVICE_UNAVAILABLE}


@contextmanager
def registry_problems() -> Iterator[None]:
    """A registry error (:class:`store.registry.RegistryError`: its ``status`` is 404, 409
    or 422) as a problem; its message names the input, never a secret."""
    try:
        yield
    except RegistryError as exc:
        raise ProblemError(exc.status, str(exc)) from None


def found(record: T | None, what: str) -> T:
    """``record``, or a 404 problem naming ``what`` when there is none."""
    if record is None:
        raise ProblemError(404, f"{what} not found")
    return record
