"""The audit trail's answers (``GET /v1/audit``, ``testbed audit verify``), shared by server and client.

The trail itself (hash-chained rows in the control plane's database) is written by
:mod:`operators.control_plane.audit`.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class AuditEntry(BaseModel):
    """An audit row as the API answers it."""

    seq: int
    at: float
    kind: str
    tenant: str | None = None
    actor: str | None = None
    job_id: str | None = None
    detail: dict[str, Any]
    prev_hash: str
    hash: str


class AuditPage(BaseModel):
    """``GET /v1/audit``: oldest first; pass ``next_cursor`` as ``cursor`` for the next page."""

    entries: list[AuditEntry]
    next_cursor: str | None = Field(default=None, description="the last seq of this page, when more rows match")


class AuditProblem(BaseModel):
    seq: int | None
    problem: str


class AuditVerification(BaseModel):
    """What ``testbed audit verify`` found: ``ok`` with the chain's head, or the rows that break it."""

    ok: bool
    rows: int
    head_seq: int
    head_hash: str
    problems: list[AuditProblem]
