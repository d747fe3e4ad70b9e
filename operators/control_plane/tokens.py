"""Issuing bearer tokens: the first tokens of a local testbed or a cluster, and rotation by the operator.

A token is 256 random bits; only its SHA-256 hash is stored (:mod:`operators.control_plane.auth`
resolves it). The clear token is shown once: returned by the API, or written 0600 to the local
credentials folder (the local operator's equivalent of a kubeconfig). In a cluster the stack
generates the operator token (its secret output ``operator_token``) and Prometheus's monitoring token
and hands the control plane only their hashes (``operator_token_sha256``, ``monitoring_token_sha256``),
which every start installs.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Collection

from operators.control_plane.auth import MONITORING, OPERATOR, Principal, Role, TokenCache, hash_token
from operators.control_plane.errors import ServiceError, not_found
from operators.control_plane.db.store import Store
from testbed.secrets import write_secret
from testbed.errors import ErrorCode

TOKEN_PREFIX = "tbt_"


def new_token() -> str:
    """A fresh random token (256 bits)."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def role_of(subject: str) -> Role:
    return {OPERATOR: "operator", MONITORING: "monitoring"}.get(subject, "tenant")  # type: ignore[return-value]


def issue_token(store: Store, subject: str) -> str:
    """A new token for a subject (its older ones stop working); only the hash is stored."""
    token = new_token()
    store.put_token(hash_token(token), subject, role_of(subject))
    return token


class TokenIssuer:
    """Issues the tokens of one region's tenants and its operator."""

    def __init__(self, store: Store, cache: TokenCache, tenants: Collection[str], region: str,
                 credentials_dir: Path | None = None, operator_token_sha256: str | None = None,
                 monitoring_token_sha256: str | None = None):
        self.store = store
        self.cache = cache
        self.tenants = tenants
        self.region = region
        self.credentials_dir = credentials_dir
        self.operator_token_sha256 = operator_token_sha256
        self.monitoring_token_sha256 = monitoring_token_sha256

    def bootstrap(self) -> None:
        """Install the stack's token hashes (cluster); give each tenant and the operator a token file (local)."""
        for subject, token_hash in ((OPERATOR, self.operator_token_sha256), (MONITORING, self.monitoring_token_sha256)):
            if token_hash is not None:
                self.install_stack_hash(subject, token_hash)
        if self.credentials_dir is None:
            return
        self.credentials_dir.mkdir(parents=True, exist_ok=True)
        with self.store.lock("testbed:tokens"):  # replicas starting together issue each token once
            known = self.store.token_subjects()
            stack_managed = self.operator_token_sha256 is not None
            for subject in [*self.tenants, *([] if stack_managed else [OPERATOR])]:
                path = self.credentials_dir / f"{subject}.token"
                if subject in known and path.exists():
                    continue
                write_secret(path, issue_token(self.store, subject))

    def install_stack_hash(self, subject: str, token_hash: str) -> None:
        """Make ``token_hash`` the one token of ``subject`` (operator, monitoring): older ones stop working; idempotent."""
        current = self.store.find_token(token_hash)
        if current is not None and (current.subject, current.role) == (subject, role_of(subject)):
            return  # already installed (a restart, another replica): no write
        self.store.put_token(token_hash, subject, role_of(subject))
        self.cache.clear()

    def rotate(self, principal: Principal, subject: str) -> str:
        """Operator only: a new token for a tenant (or the operator); older ones stop working."""
        if not principal.is_operator:
            raise ServiceError(ErrorCode.FORBIDDEN, "only the operator token can issue tokens")
        if subject == OPERATOR and self.operator_token_sha256 is not None:
            raise ServiceError(ErrorCode.FORBIDDEN, "this region's operator token comes from its Pulumi stack (output "
                               "operator_token); rotate it there, e.g. `pulumi up --replace <the token's URN>`")
        if subject == MONITORING:
            raise ServiceError(ErrorCode.FORBIDDEN, "the monitoring token comes from the Pulumi stack; rotate it there")
        if subject != OPERATOR and subject not in self.tenants:
            raise not_found(f"tenant {subject!r} in region {self.region!r}")
        token = issue_token(self.store, subject)
        self.cache.clear()
        if self.credentials_dir is not None:
            write_secret(self.credentials_dir / f"{subject}.token", token)
        return token
