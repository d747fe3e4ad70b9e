"""What the control plane refuses, and the one shape of every HTTP error answer (``ErrorBody``)."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import SQLAlchemyError
from starlette.exceptions import HTTPException
from starlette.routing import Match

from operators.control_plane.db.engine import DatabaseBusy

from testbed.errors import ErrorBody, ErrorCode, format_validation_errors
from testbed.limits import MAX_BODY_BYTES

log = logging.getLogger("testbed.control_plane")

# The error code of an HTTP status raised outside the control plane's own checks (routing, 401s).
_CODES = {
    code.status: code
    for code in (
        ErrorCode.UNAUTHORIZED,
        ErrorCode.FORBIDDEN,
        ErrorCode.NOT_FOUND,
        ErrorCode.METHOD_NOT_ALLOWED,
        ErrorCode.TOO_LARGE,
    )
}
_DESCRIPTIONS = {
    401: "missing or invalid bearer token",
    403: "not allowed, or refused at admission (quota, capacity, grant, queue cap)",
    404: "no such resource, or not the caller's",
    409: "conflicts with the resource's state (a package body that is not the digest its path names, a data name "
    "a folder holds, a job still running)",
    413: f"request body over {MAX_BODY_BYTES} bytes",
    422: "invalid request: names the field and the reason",
    503: "the database, the backend or the tenants' storage is not answering (database_unavailable carries "
    "Retry-After); retry later",
}
RETRY_AFTER_SECONDS = 2


class ServiceError(Exception):
    """A request the control plane refuses: its error code (which carries the HTTP status), a readable reason (and
    headers)."""

    def __init__(self, code: ErrorCode, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status_code = code.status
        self.code = code
        self.message = message
        self.headers = headers


def unauthorized(reason: str) -> ServiceError:
    return ServiceError(ErrorCode.UNAUTHORIZED, reason, headers={"WWW-Authenticate": "Bearer"})


def not_found(what: str) -> ServiceError:
    """404 for ``what`` (e.g. "job 'job-1'"): the same answer whether it is missing or someone else's."""
    return ServiceError(ErrorCode.NOT_FOUND, f"no {what}")


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses=`` for a route: each status answers an ``ErrorBody`` (503 with ``Retry-After``)."""
    responses: dict[int | str, dict[str, Any]] = {
        status: {"model": ErrorBody, "description": _DESCRIPTIONS.get(status, "error")} for status in statuses
    }
    if 503 in responses:
        responses[503]["headers"] = {
            "Retry-After": {
                "description": "seconds to wait before retrying (database_unavailable)",
                "schema": {"type": "string"},
            }
        }
    return responses


def error_answer(
    code: ErrorCode, detail: str, headers: dict[str, str] | None = None, status_code: int | None = None
) -> JSONResponse:
    """An ``ErrorBody`` answer, with the code's status unless ``status_code`` says otherwise (an HTTP-layer error)."""
    status_code = code.status if status_code is None else status_code
    body = ErrorBody(error=code, detail=detail).model_dump()
    return JSONResponse(status_code=status_code, content=body, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    """Every error the app answers (its own, validation, routing, crashes) becomes an ``ErrorBody``."""

    @app.exception_handler(ServiceError)
    async def _service_error(_request: Request, exc: ServiceError) -> JSONResponse:
        return error_answer(exc.code, exc.message, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        return error_answer(ErrorCode.INVALID_SPEC, format_validation_errors(exc.errors()))

    @app.exception_handler(HTTPException)
    async def _http_error(request: Request, exc: HTTPException) -> JSONResponse:
        if exc.status_code == 400:  # FastAPI: a body that is not even text (JSON syntax errors are 422 already)
            return error_answer(ErrorCode.INVALID_SPEC, "body: is not valid UTF-8 JSON")
        headers = exc.headers
        if exc.status_code == 405:  # every method of the path, not only the first route's
            headers = {**(headers or {}), "Allow": ", ".join(_allowed_methods(request))}
        return error_answer(
            _CODES.get(exc.status_code, ErrorCode.HTTP_ERROR), str(exc.detail), headers, exc.status_code
        )

    async def _database(_request: Request, exc: Exception) -> JSONResponse:
        log.warning("database unavailable: %s", str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        return error_answer(
            ErrorCode.DATABASE_UNAVAILABLE,
            "the control plane's database is not answering; retry shortly",
            {"Retry-After": str(RETRY_AFTER_SECONDS)},
        )

    app.add_exception_handler(SQLAlchemyError, _database)
    app.add_exception_handler(DatabaseBusy, _database)

    @app.exception_handler(Exception)
    async def _crash(_request: Request, _exc: Exception) -> JSONResponse:
        # Starlette answers with this, then re-raises the exception for the server to log.
        return error_answer(ErrorCode.INTERNAL_ERROR, "the control plane failed to answer; see its log")


def _allowed_methods(request: Request) -> list[str]:
    """The methods the routes of the request's path answer; a literal path (``/v1/jobs/quote``) is its own
    resource, not an id of the parametrised route beside it (``/v1/jobs/{job_id}``)."""
    matching = [
        route
        for route in request.app.router.routes
        if route.matches({**request.scope, "method": "GET"})[0] != Match.NONE
    ]
    literal = [route for route in matching if "{" not in getattr(route, "path", "{")]
    methods: set[str] = set()
    for route in literal or matching:
        methods |= getattr(route, "methods", None) or set()
    return sorted(methods)
