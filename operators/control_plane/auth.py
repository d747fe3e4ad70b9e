"""Bearer tokens: generated once, stored only as SHA-256 hashes, resolved to a principal."""

from __future__ import annotations

import hashlib
import secrets
from typing import Literal

from fastapi import HTTPException, Request, status
from pydantic import BaseModel

from operators.control_plane.store import Store

TOKEN_PREFIX = "tbt_"
OPERATOR = "operator"


class Principal(BaseModel):
    """Who is calling: a tenant (sees only itself) or the region's operator (sees all)."""

    subject: str
    role: Literal["tenant", "operator"]

    @property
    def is_operator(self) -> bool:
        return self.role == "operator"

    def can_see(self, tenant: str) -> bool:
        return self.is_operator or self.subject == tenant


def new_token() -> str:
    """A fresh random token (256 bits)."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    """Tokens carry 256 random bits, so a plain SHA-256 is a safe one-way store."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def issue_token(store: Store, subject: str, role: Literal["tenant", "operator"], replace: bool = True) -> str:
    """Create a token for a subject, store its hash, return the clear token (shown once)."""
    token = new_token()
    store.put_token(hash_token(token), subject, role, replace=replace)
    return token


def _unauthorized(reason: str) -> HTTPException:
    return HTTPException(
        status_code=status.HTTP_401_UNAUTHORIZED,
        detail=reason,
        headers={"WWW-Authenticate": "Bearer"},
    )


def principal_from_request(request: Request) -> Principal:
    """FastAPI dependency: the caller of this request, or 401."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise _unauthorized("missing bearer token: send 'Authorization: Bearer <tenant token>'")
    store: Store = request.app.state.plane.store
    row = store.find_token(hash_token(token.strip()))
    if row is None:
        raise _unauthorized("invalid token")
    return Principal(subject=row.subject, role=row.role)  # type: ignore[arg-type]
