"""What goes wrong, said one way: pydantic errors as ``where: reason`` and the API's error body."""

from __future__ import annotations

from typing import Any, Callable, Iterable

from pydantic import BaseModel, Field

MAX_ECHO_CHARS = 80  # how much of an offending value an error message repeats


class ErrorBody(BaseModel):
    """Every error the control plane answers (4xx/5xx): a stable code and one readable line."""

    error: str = Field(description="machine-readable code, e.g. invalid_spec, not_found, quota_exceeded")
    detail: str = Field(description="what is wrong, naming the field or resource and the reason")


def problem_reason(error: dict[str, Any]) -> str:
    """The reason of one pydantic error, with the offending value when it is a scalar."""
    message = error["msg"].removeprefix("Value error, ")
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


def validation_problems(errors: list[dict[str, Any]],
                        path: Callable[[tuple[Any, ...]], str] = lambda loc: dotted(loc)) -> list[tuple[str, str]]:
    """``[(key path, reason), ...]`` of a pydantic ``ValidationError.errors()`` list."""
    return [(path(tuple(e["loc"])), problem_reason(e)) for e in errors]


def format_validation_errors(errors: list[dict[str, Any]], path: Callable[[tuple[Any, ...]], str] = dotted,
                             sep: str = "; ") -> str:
    """One line per problem (``where: reason``), joined by ``sep``."""
    return sep.join(f"{where}: {reason}" for where, reason in validation_problems(errors, path))
