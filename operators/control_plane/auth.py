"""Who is calling: a bearer token, stored only as its SHA-256 hash, resolved to a principal.

Tokens are issued in :mod:`operators.control_plane.tokens`.
"""

from __future__ import annotations

import time
from typing import Literal

from fastapi import Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel

from testbed.errors import ErrorCode
from operators.control_plane.errors import ServiceError, unauthorized
from operators.control_plane.db.models import DEFAULT_TOKEN_NAME
from operators.control_plane.db.store import Store
from testbed.settings import token_sha256

OPERATOR = "operator"
# Prometheus's identity: it reads /metrics (every tenant's usage) and nothing else.
MONITORING = "monitoring"
# The ministry's program office: reads every tenant's usage, grants, statements and audit trail; writes nothing.
PROGRAM_OFFICE = "program-office"
Role = Literal["tenant", "operator", "monitoring", "program-office"]
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class Principal(BaseModel):
    """Who is calling: a tenant (sees only itself), the region's operator (sees all) or its monitoring."""

    subject: str
    role: Role
    token_name: str = DEFAULT_TOKEN_NAME  # which of the subject's named tokens made the call

    @property
    def actor(self) -> str:
        """Who acted, as audit rows and ledger entries name it: ``<subject>:<token name>``."""
        return f"{self.subject}:{self.token_name}"

    @property
    def is_operator(self) -> bool:
        return self.role == "operator"

    @property
    def is_program_office(self) -> bool:
        return self.role == "program-office"

    @property
    def reads_every_tenant(self) -> bool:
        """The operator and the program office read every tenant's accounts (usage, grants, statements, audit)."""
        return self.role in ("operator", "program-office")

    def can_read_accounts(self, tenant: str) -> bool:
        """Usage, grant, statements and audit of ``tenant``: its own token, the operator, the program office."""
        return self.reads_every_tenant or self.can_see(tenant)

    @property
    def can_read_metrics(self) -> bool:
        return self.role in ("operator", "monitoring")

    def can_see(self, tenant: str) -> bool:
        return self.is_operator or (self.role == "tenant" and self.subject == tenant)


def hash_token(token: str) -> str:
    """Tokens carry 256 random bits, so a plain SHA-256 is a safe one-way store."""
    return token_sha256(token)


async def principal_from_request(request: Request) -> Principal:
    """FastAPI dependency: the caller of this request, or 401.

    A cached token costs no thread hop; a lookup reads the database on a worker thread, so a
    locked database never stalls the event loop.
    """
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise unauthorized("missing bearer token: send 'Authorization: Bearer <tenant token>'")
    tokens: TokenCache = request.app.state.plane.tokens
    token_hash = hash_token(token.strip())
    hit, principal = tokens.cached(token_hash)
    if not hit:
        principal = await run_in_threadpool(tokens.resolve, token_hash)
    if principal is None:
        raise unauthorized("invalid token")
    if principal.is_program_office and request.method.upper() not in READ_METHODS:
        raise ServiceError(ErrorCode.FORBIDDEN, "the program-office token is read-only: it changes nothing")
    return principal


class TokenCache:
    """Token hash -> principal, cached for a few seconds so a request costs no database read.

    A rotation in this process clears the cache at once; other replicas see it within ``ttl``.
    """

    def __init__(self, store: Store, ttl: float = 5.0):
        self.store = store
        self.ttl = ttl
        self._entries: dict[str, tuple[float, Principal | None]] = {}

    def cached(self, token_hash: str) -> tuple[bool, Principal | None]:
        """(whether a fresh answer is cached, that answer)."""
        cached = self._entries.get(token_hash)
        if cached is not None and time.monotonic() - cached[0] < self.ttl:
            return True, cached[1]
        return False, None

    def resolve(self, token_hash: str) -> Principal | None:
        hit, principal = self.cached(token_hash)
        if hit:
            return principal
        now = time.monotonic()
        row = self.store.find_token(token_hash)
        principal = None if row is None else Principal(subject=row.subject, role=row.role, token_name=row.name)  # type: ignore[arg-type]
        if len(self._entries) > 10_000:
            self._entries.clear()
        self._entries[token_hash] = (now, principal)
        return principal

    def clear(self) -> None:
        self._entries.clear()
