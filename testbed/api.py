"""Answers of the control plane's API that are not jobs or usage: the models both server and client use.

Jobs live in :mod:`testbed.jobs`, usage in :mod:`testbed.usage`, the error body in :mod:`testbed.errors`.
"""

from __future__ import annotations

from pydantic import BaseModel

from testbed.templates import Template


class Health(BaseModel):
    status: str
    region: str
    backend: str
    backend_healthy: bool
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
