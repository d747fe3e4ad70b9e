"""What goes wrong, said one way: pydantic errors as ``where: reason`` and the API's error body."""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Callable, Iterable, Mapping, Sequence

from pydantic import BaseModel, Field

MAX_ECHO_CHARS = 80  # how much of an offending value an error message repeats


class ErrorCode(StrEnum):
    """Every error code the control plane answers; ``status`` is the HTTP status it comes with."""

    INVALID_SPEC = "invalid_spec"
    UNAUTHORIZED = "unauthorized"
    FORBIDDEN = "forbidden"
    QUOTA_EXCEEDED = "quota_exceeded"
    CAPACITY_EXCEEDED = "capacity_exceeded"
    GRANT_EXHAUSTED = "grant_exhausted"
    GRANT_INACTIVE = "grant_inactive"
    GRANT_INSUFFICIENT = "grant_insufficient"  # the job's hold (its maximum cost) does not fit the grant's balance
    MAX_RUNTIME_EXCEEDED = "max_runtime_exceeded"  # a max run time above the tenant's cap
    QUEUE_FULL = "queue_full"
    NOT_FOUND = "not_found"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    DIGEST_MISMATCH = "digest_mismatch"
    NAME_CONFLICT = "name_conflict"
    JOB_ACTIVE = "job_active"
    MONTH_OPEN = "month_open"  # a month that has not ended, or an earlier month still open, cannot be closed
    MONTH_CLOSED = "month_closed"
    TOO_LARGE = "too_large"
    HTTP_ERROR = "http_error"  # any other status the HTTP layer answers
    INTERNAL_ERROR = "internal_error"
    BACKEND_UNAVAILABLE = "backend_unavailable"
    DATABASE_UNAVAILABLE = "database_unavailable"
    MLFLOW_UNAVAILABLE = "mlflow_unavailable"
    STORAGE_UNAVAILABLE = "storage_unavailable"
    EXPORT_REQUIRED = "export_required"  # a tenant purge before an export newer than its last job
    EXPORT_UNAVAILABLE = "export_unavailable"  # a statement file cannot be rendered (e.g. no Korean font)

    @property
    def status(self) -> int:
        """The HTTP status this code is answered with."""
        return ERROR_STATUS[self]


ERROR_STATUS: dict[ErrorCode, int] = {
    ErrorCode.INVALID_SPEC: 422,
    ErrorCode.UNAUTHORIZED: 401,
    ErrorCode.FORBIDDEN: 403,
    ErrorCode.QUOTA_EXCEEDED: 403,
    ErrorCode.CAPACITY_EXCEEDED: 403,
    ErrorCode.GRANT_EXHAUSTED: 403,
    ErrorCode.GRANT_INACTIVE: 403,
    ErrorCode.GRANT_INSUFFICIENT: 403,
    ErrorCode.MAX_RUNTIME_EXCEEDED: 403,
    ErrorCode.QUEUE_FULL: 403,
    ErrorCode.NOT_FOUND: 404,
    ErrorCode.METHOD_NOT_ALLOWED: 405,
    ErrorCode.DIGEST_MISMATCH: 409,
    ErrorCode.NAME_CONFLICT: 409,
    ErrorCode.JOB_ACTIVE: 409,
    ErrorCode.MONTH_OPEN: 409,
    ErrorCode.MONTH_CLOSED: 409,
    ErrorCode.TOO_LARGE: 413,
    ErrorCode.HTTP_ERROR: 400,
    ErrorCode.INTERNAL_ERROR: 500,
    ErrorCode.BACKEND_UNAVAILABLE: 503,
    ErrorCode.DATABASE_UNAVAILABLE: 503,
    ErrorCode.MLFLOW_UNAVAILABLE: 503,
    ErrorCode.STORAGE_UNAVAILABLE: 503,
    ErrorCode.EXPORT_REQUIRED: 409,
    ErrorCode.EXPORT_UNAVAILABLE: 503,
}


class ErrorBody(BaseModel):
    """Every error the control plane answers (4xx/5xx): a stable code and one readable line."""

    # Read as a plain string (a client keeps working against a newer server's codes); the schema lists ErrorCode.

    error: str = Field(
        description="machine-readable code, e.g. invalid_spec, not_found, quota_exceeded",
        json_schema_extra={"enum": [code.value for code in ErrorCode]},
    )
    detail: str = Field(description="what is wrong, naming the field or resource and the reason")


def problem_reason(error: Mapping[str, Any]) -> str:
    """The reason of one pydantic error, with the offending value when it is a scalar."""
    message = str(error["msg"]).removeprefix("Value error, ")
    if error["type"] == "missing":
        return "is required but missing"
    if error["type"] == "extra_forbidden":
        return "is not a known key"
    got = error.get("input")
    if got is not None and not isinstance(got, (dict, list)):
        shown = repr(got)
        if len(shown) > MAX_ECHO_CHARS:  # a hostile 10 MB value is not sent back
            shown = f"{shown[:MAX_ECHO_CHARS]}... ({len(shown)} characters)"
        return f"{message} (got {shown})"
    return message


def dotted(loc: Iterable[Any]) -> str:
    """A pydantic location as a key path: ``body.params.epochs``, ``tenants[1].quota``."""
    out = ""
    for item in loc:
        out += f"[{item}]" if isinstance(item, int) else (f".{item}" if out else str(item))
    return out


def validation_problems(
    errors: Sequence[Mapping[str, Any]], path: Callable[[tuple[Any, ...]], str] = lambda loc: dotted(loc)
) -> list[tuple[str, str]]:
    """``[(key path, reason), ...]`` of a pydantic ``ValidationError.errors()`` list."""
    return [(path(tuple(e["loc"])), problem_reason(e)) for e in errors]


def format_validation_errors(
    errors: Sequence[Mapping[str, Any]], path: Callable[[tuple[Any, ...]], str] = dotted, sep: str = "; "
) -> str:
    """One line per problem (``where: reason``), joined by ``sep``."""
    return sep.join(f"{where}: {reason}" for where, reason in validation_problems(errors, path))
