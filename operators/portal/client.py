"""The portal reads and writes only through the control plane's own REST API, in process.

Every call carries the session's bearer token and goes through the same app (ASGI, no socket), so
the portal has exactly the API's authentication, isolation (another company's object is a 404)
and validation, and no query of its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, AsyncIterator

import httpx

INTERNAL_BASE = "http://control-plane.internal"


@dataclass
class ApiError(Exception):
    """A non-2xx answer: status and the API's ``{"error", "detail"}``."""

    status: int
    code: str
    detail: str

    def __str__(self) -> str:
        return f"{self.code}: {self.detail}"


def _error(response: httpx.Response) -> ApiError:
    try:
        body = response.json()
        code, detail = str(body.get("error", "error")), str(body.get("detail", ""))
    except ValueError:
        code, detail = "error", response.text[:300]
    return ApiError(response.status_code, code, detail)


class Api:
    """One app's API as seen with one token."""

    def __init__(self, http: httpx.AsyncClient, token: str):
        self.http = http
        self.headers = {"Authorization": f"Bearer {token}"}

    async def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {**self.headers, **kwargs.pop("headers", {})}
        response = await self.http.request(method, path, headers=headers, **kwargs)
        if response.status_code >= 400:
            raise _error(response)
        return response

    async def get(self, path: str, **params: Any) -> Any:
        clean = {k: v for k, v in params.items() if v is not None}
        return (await self.request("GET", path, params=clean)).json()

    async def post(self, path: str, body: Any = None) -> Any:
        return (await self.request("POST", path, json=body)).json()

    async def put_stream(self, path: str, chunks: AsyncIterator[bytes]) -> Any:
        return (
            await self.request("PUT", path, content=chunks, headers={"Content-Type": "application/octet-stream"})
        ).json()


def internal_client(app: Any) -> httpx.AsyncClient:
    """An HTTP client that calls ``app`` in process."""
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=INTERNAL_BASE, timeout=60.0)
