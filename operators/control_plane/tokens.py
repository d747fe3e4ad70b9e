"""Issuing bearer tokens: the first tokens of a local testbed, and rotation by the operator.

A token is 256 random bits; only its SHA-256 hash is stored (:mod:`operators.control_plane.auth`
resolves it). The clear token is shown once: returned by the API, or written 0600 to the local
credentials folder (the local operator's equivalent of a kubeconfig).
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Collection

from operators.control_plane.auth import OPERATOR, Principal, Role, TokenCache, hash_token
from operators.control_plane.errors import ServiceError, not_found
from operators.control_plane.store import Store
from testbed.secrets import write_secret

TOKEN_PREFIX = "tbt_"


def new_token() -> str:
    """A fresh random token (256 bits)."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def role_of(subject: str) -> Role:
    return "operator" if subject == OPERATOR else "tenant"


def issue_token(store: Store, subject: str) -> str:
    """A new token for a subject (its older ones stop working); only the hash is stored."""
    token = new_token()
    store.put_token(hash_token(token), subject, role_of(subject))
    return token


class TokenIssuer:
    """Issues the tokens of one region's tenants and its operator."""

    def __init__(self, store: Store, cache: TokenCache, tenants: Collection[str], region: str,
                 credentials_dir: Path | None = None):
        self.store = store
        self.cache = cache
        self.tenants = tenants
        self.region = region
        self.credentials_dir = credentials_dir

    def bootstrap(self) -> None:
        """Local mode: give every tenant (and the operator) a token file if it has none yet."""
        if self.credentials_dir is None:
            return
        self.credentials_dir.mkdir(parents=True, exist_ok=True)
        with self.store.lock("testbed:tokens"):  # replicas starting together issue each token once
            known = self.store.token_subjects()
            for subject in [*self.tenants, OPERATOR]:
                path = self.credentials_dir / f"{subject}.token"
                if subject in known and path.exists():
                    continue
                write_secret(path, issue_token(self.store, subject))

    def rotate(self, principal: Principal, subject: str) -> str:
        """Operator only: a new token for a tenant (or the operator); older ones stop working."""
        if not principal.is_operator:
            raise ServiceError(403, "forbidden", "only the operator token can issue tokens")
        if subject != OPERATOR and subject not in self.tenants:
            raise not_found(f"tenant {subject!r} in region {self.region!r}")
        token = issue_token(self.store, subject)
        self.cache.clear()
        if self.credentials_dir is not None:
            write_secret(self.credentials_dir / f"{subject}.token", token)
        return token
