"""Answers of the control plane's API that are not jobs or usage: the models both server and client use.

Jobs live in :mod:`testbed.jobs`, usage in :mod:`testbed.usage`, the error body in :mod:`testbed.errors`.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from testbed.templates import Template


class Health(BaseModel):
    """``GET /healthz``: answered within about a second, whatever the database or backend is doing."""

    status: Literal["ok", "degraded"] = Field(description="degraded: the database or the backend is not answering")
    region: str
    backend: str
    backend_healthy: bool
    database: Literal["ok", "busy", "unavailable"] = Field(
        description="busy: writes wait on a lock (admissions answer 503); unavailable: not even reads answer")
    reconciler: bool = False  # this replica holds the reconciler lease and has completed a sync round under it


class IssuedToken(BaseModel):
    subject: str
    token: str


class TenantInfo(BaseModel):
    id: str
    name: str
    industry: str
    sample: bool
    grant_gpu_hours: float
    grant_start: str
    grant_end: str


class TenantList(BaseModel):
    tenants: list[TenantInfo]


class TemplateList(BaseModel):
    templates: list[Template]
