"""The one error the SDK raises: a failed call as one readable line, with its HTTP status and error code."""

from __future__ import annotations

import json

import httpx
from pydantic import ValidationError

from testbed.errors import ErrorBody


class TestbedError(RuntimeError):
    """A failed call as one readable line, with the HTTP status (if any), the error code and the detail.

    ``code`` is the server's :class:`~testbed.errors.ErrorBody` code, or a client-side one:
    ``no_address``, ``no_token``, ``unreachable``, ``timeout``, ``bad_answer``, ``refused_here`` (a folder or file
    the client will not send: too large, a link out of it, a bad name).
    """

    __test__ = False  # not a pytest test class

    def __init__(self, detail: str, code: str, status_code: int | None = None, reason: str = ""):
        super().__init__(f"{status_code} {reason}: {detail}" if status_code else detail)
        self.detail = detail
        self.code = code
        self.status_code = status_code

    @classmethod
    def from_response(cls, response: httpx.Response) -> "TestbedError":
        """The error a 4xx/5xx answer carries (an ``ErrorBody``; any other body is read as best as can be)."""
        try:
            body = ErrorBody.model_validate_json(response.content)
            code, detail = body.error, body.detail
        except ValidationError:
            code = response.reason_phrase.lower().replace(" ", "_") or f"http_{response.status_code}"
            detail = _loose_detail(response)
        return cls(" ".join(detail.split()), code, response.status_code, response.reason_phrase)


def _loose_detail(response: httpx.Response) -> str:
    """The reason in an answer that is not an ``ErrorBody`` (a proxy's page, FastAPI's ``{"detail": ...}``)."""
    try:
        body = response.json()
    except ValueError:
        return response.text.strip()[:300] or response.reason_phrase
    detail = body.get("detail", body) if isinstance(body, dict) else body
    return detail if isinstance(detail, str) else json.dumps(detail)
