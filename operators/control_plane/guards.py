"""The API's edge: the request-body size limit, list cursors, and health probes that never hang.

A body over ``MAX_BODY_BYTES`` (an upload route: its own limit) is refused with 413 before it is read
(by its Content-Length) or as soon as it grows past the limit (a chunked body). A list cursor is the (submitted_at, id) of the
last job of the page. Health probes run on their own threads and answer
within ``PROBE_TIMEOUT_SECONDS`` whatever the database or the backend is doing.
"""

from __future__ import annotations

import re
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Callable, Literal, NamedTuple, Sequence, TypeVar

from sqlalchemy import text
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from operators.control_plane.backends.base import Backend
from operators.control_plane.errors import ServiceError, error_answer
from operators.control_plane.db.store import JobRow, Store
from testbed.limits import MAX_BODY_BYTES
from testbed.errors import ErrorCode

PROBE_TIMEOUT_SECONDS = 1.0
DatabaseState = Literal["ok", "busy", "unavailable"]
T = TypeVar("T")


class UploadLimit(NamedTuple):
    """A route that takes a larger body than a JSON request: its method, path prefix, limit and what it is."""

    method: str
    prefix: str
    max_bytes: int
    what: str


class BodySizeLimit:
    """ASGI middleware: 413 (an ``ErrorBody``) for a request body over ``max_bytes`` (an upload route's own limit)."""

    def __init__(self, app: ASGIApp, max_bytes: int = MAX_BODY_BYTES, uploads: Sequence[UploadLimit] = ()):
        self.app = app
        self.max_bytes = max_bytes
        self.uploads = tuple(uploads)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit, what = self._limit(scope)
        detail = f"request body is larger than {limit} bytes (the limit of {what})"
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            await error_answer(ErrorCode.TOO_LARGE, detail)(scope, receive, send)
            return
        received = 0

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > limit:  # FastAPI re-raises an HTTPException met while reading the body
                raise HTTPException(413, detail)
            return message

        await self.app(scope, limited, send)

    def _limit(self, scope: Scope) -> tuple[int, str]:
        for upload in self.uploads:
            if scope.get("method") == upload.method and scope.get("path", "").startswith(upload.prefix):
                return upload.max_bytes, upload.what
        return self.max_bytes, "a request"


# -- cursors ------------------------------------------------------------------------------------
# '<submitted_at>~<id>' of the last job of a page: every string of this shape is a place in the list
CURSOR_PATTERN = r"^[0-9]{1,16}\.[0-9]{1,17}~[A-Za-z0-9._-]{1,64}$"


def encode_cursor(row: JobRow) -> str:
    """The cursor of the page that follows ``row`` (the float's exact, shortest spelling)."""
    return f"{float(row.submitted_at)!r}~{row.id}"


def decode_cursor(cursor: str) -> tuple[float, str]:
    """(submitted_at, id) of a cursor; 422 for one that is not of the documented shape."""
    if not re.match(CURSOR_PATTERN, cursor):
        raise ServiceError(
            ErrorCode.INVALID_SPEC, "query.cursor: not a cursor this API gave (use next_cursor of a page)"
        )
    submitted_at, _, job_id = cursor.partition("~")
    return float(submitted_at), job_id


# -- health -------------------------------------------------------------------------------------
class HealthProbe:
    """Database and backend health, each answered within ``timeout`` seconds."""

    def __init__(self, store: Store, backend: Backend, timeout: float = PROBE_TIMEOUT_SECONDS):
        self.store = store
        self.backend = backend
        self.timeout = timeout
        self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="health")

    def database(self) -> DatabaseState:
        return self._bounded(lambda: probe_database(self.store, self.timeout / 2), "unavailable")

    def backend_healthy(self) -> bool:
        return self._bounded(self.backend.healthy, False)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def bounded(self, probe: Callable[[], T], fallback: T) -> T:
        """``probe()``, or ``fallback`` when it takes over the timeout."""
        return self._bounded(probe, fallback)

    def _bounded(self, probe: Callable[[], T], fallback: T) -> T:
        try:
            return self._pool.submit(probe).result(timeout=self.timeout)
        except FutureTimeout:
            return fallback


def probe_database(store: Store, timeout: float) -> DatabaseState:
    """ok, busy (reads answer but a write cannot start) or unavailable."""
    url = store.engine.url
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        try:
            with closing(sqlite3.connect(url.database, timeout=timeout, isolation_level=None)) as conn:
                try:
                    conn.execute("BEGIN IMMEDIATE")  # the write lock, released at once
                    conn.execute("ROLLBACK")
                    return "ok"
                except sqlite3.OperationalError:
                    conn.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchall()
                    return "busy"
        except sqlite3.Error:
            return "unavailable"
    try:
        with store.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        return "ok"
    except Exception:  # any driver error: the database does not answer
        return "unavailable"
