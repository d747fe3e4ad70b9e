"""Answers of the control plane's API that are not jobs or usage: the models both server and client use.

Jobs live in :mod:`testbed.jobs`, usage in :mod:`testbed.usage`, the error body in :mod:`testbed.errors`.
"""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from typing import Iterator, Literal

from pydantic import BaseModel, Field

from testbed.templates import Template


class Health(BaseModel):
    """``GET /healthz``: answered within about a second, whatever the database or backend is doing."""

    status: Literal["ok", "degraded"] = Field(description="degraded: the database or the backend is not answering")
    region: str
    backend: str
    backend_healthy: bool
    database: Literal["ok", "busy", "unavailable"] = Field(
        description="busy: writes wait on a lock (admissions answer 503); unavailable: not even reads answer"
    )
    reconciler: bool = False  # this replica holds the reconciler lease and has completed a sync round under it
    mlflow: Literal["ok", "unavailable"] = Field(
        default="ok",
        description="the tracking server's /health: while unavailable jobs still run (their MLflow "
        "calls fail within about a minute) and /v1/mlflow/credentials answers 503",
    )


class IssuedToken(BaseModel):
    subject: str
    token: str = Field(description="shown once; only its hash is stored")
    name: str = "default"


class TokenInfo(BaseModel):
    """A named token as the operator lists it (never the token or its hash: ``token_id`` is the hash's first 12 hex)."""

    subject: str
    name: str
    token_id: str
    created_at: str
    revoked_at: str | None = None
    active: bool


class TokenList(BaseModel):
    tokens: list[TokenInfo]


class MlflowLogin(BaseModel):
    """``GET /v1/mlflow/credentials``: the caller's own MLflow login (a tenant: its user and workspace; the
    operator: the program office's read-only user, which picks a workspace per call)."""

    tracking_uri: str = Field(description="MLFLOW_TRACKING_URI; the UI is served at the same address")
    username: str = Field(description="MLFLOW_TRACKING_USERNAME")
    password: str = Field(description="MLFLOW_TRACKING_PASSWORD (changes when the tenant's token is rotated)")
    workspace: str | None = Field(default=None, description="MLFLOW_WORKSPACE; none for the operator")

    def env(self) -> dict[str, str]:
        """The environment the MLflow client reads."""
        env = {
            "MLFLOW_TRACKING_URI": self.tracking_uri,
            "MLFLOW_TRACKING_USERNAME": self.username,
            "MLFLOW_TRACKING_PASSWORD": self.password,
        }
        if self.workspace is not None:
            env["MLFLOW_WORKSPACE"] = self.workspace
        return env

    @contextmanager
    def active(self) -> Iterator["MlflowLogin"]:
        """Within it, ``mlflow`` and ``MlflowClient()`` in this process act as this login (``os.environ``, and the
        tracking URI an earlier ``mlflow.set_tracking_uri`` pinned, which MLflow prefers to the environment)."""
        names = ("MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_WORKSPACE")
        saved = {name: os.environ.get(name) for name in names}
        tracking = sys.modules.get("mlflow.tracking._tracking_service.utils")  # imported with mlflow
        pinned = getattr(tracking, "_tracking_uri", None)
        for name in names:
            os.environ.pop(name, None)
        os.environ.update(self.env())
        if tracking is not None:
            tracking.set_tracking_uri(self.tracking_uri)
        try:
            yield self
        finally:
            if tracking is not None:
                tracking.set_tracking_uri(pinned)  # None: the environment decides again (restored below)
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value


class TenantInfo(BaseModel):
    id: str
    name: str
    industry: str
    sample: bool
    grant_gpu_hours: float | None = None
    grant_krw: int | None = None
    grant_start: str
    grant_end: str


class TenantList(BaseModel):
    tenants: list[TenantInfo]


class TemplateList(BaseModel):
    templates: list[Template]
