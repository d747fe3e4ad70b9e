"""Issuing bearer tokens: the first tokens of a local testbed or a cluster, and rotation by the operator.

A token is 256 random bits; only its SHA-256 hash is stored (:mod:`operators.control_plane.auth`
resolves it). The clear token is shown once: returned by the API, or written 0600 to the local
credentials folder (the local operator's equivalent of a kubeconfig). In a cluster the stack
generates the operator token (its secret output ``operator_token``) and Prometheus's monitoring token
and hands the control plane only their hashes (``operator_token_sha256``, ``monitoring_token_sha256``),
which every start installs.
"""

from __future__ import annotations

import re
import secrets
from pathlib import Path
from typing import Collection

from sqlalchemy.orm import Session

from operators.control_plane import audit
from operators.control_plane.audit import AuditKind
from operators.control_plane.auth import MONITORING, OPERATOR, PROGRAM_OFFICE, Principal, Role, TokenCache, hash_token
from operators.control_plane.errors import ServiceError, not_found
from operators.control_plane.db.models import DEFAULT_TOKEN_NAME, TokenRow
from operators.control_plane.db.store import Store
from testbed.secrets import write_secret
from testbed.errors import ErrorCode

TOKEN_PREFIX = "tbt_"


def new_token() -> str:
    """A fresh random token (256 bits)."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def role_of(subject: str) -> Role:
    roles = {OPERATOR: "operator", MONITORING: "monitoring", PROGRAM_OFFICE: "program-office"}
    return roles.get(subject, "tenant")  # type: ignore[return-value]


TOKEN_NAME_PATTERN = r"^[\w][\w.@-]{0,63}$"  # a person or purpose: `kim`, `ci-bot`, `김민수`
_TOKEN_NAME = re.compile(TOKEN_NAME_PATTERN)


def _audit_token(subject: str, name: str, token_hash: str, actor: str | None):
    """The audit row of a token written in the same transaction: issued, or rotated when it replaced one."""

    def write(session: Session, revoked: list[TokenRow]) -> None:
        audit.append(
            session,
            AuditKind.TOKEN_ROTATED if revoked else AuditKind.TOKEN_ISSUED,
            tenant=subject if role_of(subject) == "tenant" else None,
            actor=actor,
            detail={
                "subject": subject,
                "name": name,
                "token_id": token_hash[:12],
                "replaced": [row.token_hash[:12] for row in revoked],
            },
        )

    return write


def issue_token(store: Store, subject: str, name: str = DEFAULT_TOKEN_NAME, actor: str | None = None) -> str:
    """A new token for a subject under ``name`` (its older token of that name stops working); only the hash is stored."""
    token = new_token()
    token_hash = hash_token(token)
    store.put_token(
        token_hash, subject, role_of(subject), name=name, on_write=_audit_token(subject, name, token_hash, actor)
    )
    return token


def check_token_name(name: str) -> str:
    if not _TOKEN_NAME.match(name):
        raise ServiceError(
            ErrorCode.INVALID_SPEC,
            f"token name {name[:80]!r}: use 1-64 letters, digits, '.', '_', '@' "
            "or '-', starting with a letter or digit",
        )
    return name


class TokenIssuer:
    """Issues the tokens of one region's tenants and its operator."""

    def __init__(
        self,
        store: Store,
        cache: TokenCache,
        tenants: Collection[str],
        region: str,
        credentials_dir: Path | None = None,
        operator_token_sha256: str | None = None,
        monitoring_token_sha256: str | None = None,
        program_office_token_sha256: str | None = None,
    ):
        self.store = store
        self.cache = cache
        self.tenants = tenants
        self.region = region
        self.credentials_dir = credentials_dir
        self.operator_token_sha256 = operator_token_sha256
        self.monitoring_token_sha256 = monitoring_token_sha256
        self.program_office_token_sha256 = program_office_token_sha256

    def bootstrap(self) -> None:
        """Install the stack's token hashes (cluster); give each tenant and the operator a token file (local)."""
        for subject, token_hash in (
            (OPERATOR, self.operator_token_sha256),
            (MONITORING, self.monitoring_token_sha256),
            (PROGRAM_OFFICE, self.program_office_token_sha256),
        ):
            if token_hash is not None:
                self.install_stack_hash(subject, token_hash)
        if self.credentials_dir is None:
            return
        self.credentials_dir.mkdir(parents=True, exist_ok=True)
        with self.store.lock("testbed:tokens"):  # replicas starting together issue each token once
            known = self.store.token_subjects()
            stack_managed = self.operator_token_sha256 is not None
            for subject in [
                *self.tenants,
                *([] if stack_managed else [OPERATOR]),
                *([] if self.program_office_token_sha256 is not None else [PROGRAM_OFFICE]),
            ]:
                path = self.credentials_dir / f"{subject}.token"
                if subject in known and path.exists():
                    continue
                write_secret(path, issue_token(self.store, subject))

    def install_stack_hash(self, subject: str, token_hash: str) -> None:
        """Make ``token_hash`` the one token of ``subject`` (operator, monitoring): older ones stop working; idempotent."""
        current = self.store.find_token(token_hash)
        if current is not None and (current.subject, current.role) == (subject, role_of(subject)):
            return  # already installed (a restart, another replica): no write
        self.store.put_token(
            token_hash, subject, role_of(subject), on_write=_audit_token(subject, DEFAULT_TOKEN_NAME, token_hash, None)
        )
        self.cache.clear()

    def rotate(self, principal: Principal, subject: str, name: str = DEFAULT_TOKEN_NAME) -> str:
        """Operator only: a new token named ``name`` for a tenant (or the operator); its older token of that
        name stops working, the subject's other named tokens keep working."""
        self._check_subject(principal, subject, name)
        token = issue_token(self.store, subject, name, actor=principal.actor)
        self.cache.clear()
        if self.credentials_dir is not None and name == DEFAULT_TOKEN_NAME:
            write_secret(self.credentials_dir / f"{subject}.token", token)
        return token

    def revoke(self, principal: Principal, subject: str, name: str) -> list[TokenRow]:
        """Operator only: the subject's token ``name`` stops working (kept, marked revoked); 404 if none is active."""
        self._check_subject(principal, subject, name)

        def write(session: Session, rows: list[TokenRow]) -> None:
            audit.append(
                session,
                AuditKind.TOKEN_REVOKED,
                tenant=subject if role_of(subject) == "tenant" else None,
                actor=principal.actor,
                detail={"subject": subject, "name": name, "token_ids": [row.token_hash[:12] for row in rows]},
            )

        rows = self.store.revoke_tokens(subject, name, on_write=write)
        if not rows:
            raise not_found(f"active token {name!r} of {subject!r}")
        self.cache.clear()
        return rows

    def list(self, principal: Principal, subject: str) -> list[TokenRow]:
        """Operator only: a subject's tokens (names and dates, never hashes), revoked ones included."""
        self._check_subject(principal, subject, DEFAULT_TOKEN_NAME, issuing=False)
        return self.store.list_tokens(subject)

    def _check_subject(self, principal: Principal, subject: str, name: str, issuing: bool = True) -> None:
        check_token_name(name)
        if not principal.is_operator:
            raise ServiceError(ErrorCode.FORBIDDEN, "only the operator token can issue, list or revoke tokens")
        if issuing and subject == OPERATOR and self.operator_token_sha256 is not None and name == DEFAULT_TOKEN_NAME:
            raise ServiceError(
                ErrorCode.FORBIDDEN,
                "this region's operator token comes from its Pulumi stack (output "
                "operator_token); rotate it there, e.g. `pulumi up --replace <the token's URN>`",
            )
        if subject == MONITORING:
            raise ServiceError(ErrorCode.FORBIDDEN, "the monitoring token comes from the Pulumi stack; rotate it there")
        if subject == PROGRAM_OFFICE and self.program_office_token_sha256 is not None:
            raise ServiceError(
                ErrorCode.FORBIDDEN,
                "this region's program-office token comes from its Pulumi stack "
                "(output program_office_token); rotate it there",
            )
        if subject not in (OPERATOR, PROGRAM_OFFICE) and subject not in self.tenants:
            raise not_found(f"tenant {subject!r} in region {self.region!r}")
