"""Settings of one control-plane process: a JSON file that local mode and Pulumi both write from this model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from testbed.errors import format_validation_errors
from testbed.versions import IMAGES

# Cluster mode (backend "kuberay"): how long a finished job's Ray cluster stays.
DEFAULT_RAYJOB_TTL_SECONDS = 600


class SettingsError(ValueError):
    pass


class ControlPlaneSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    stack_file: Path = Field(description="the region's Pulumi.<region>.yaml (or its rendering in a ConfigMap)")
    database_url: str = Field(description="SQLAlchemy URL: sqlite:///... locally, postgresql://... in a cluster")
    backend: Literal["ray", "noop", "kuberay"] = "ray"
    ray_address: str | None = Field(default=None, description="Ray dashboard (Jobs API) URL")
    placement_file: Path | None = Field(
        default=None,
        description="kuberay: tenant -> namespace, LocalQueue, ClusterQueue, GPU pool (Pulumi's placement.yaml)",
    )
    ray_image: str = Field(default=IMAGES["ray"].ref, description="kuberay: image of the jobs' Ray pods")
    rayjob_ttl_seconds: int = Field(
        default=DEFAULT_RAYJOB_TTL_SECONDS, ge=0, description="kuberay: keep a finished job's Ray cluster this long"
    )
    mlflow_tracking_uri: str = Field(description="handed to every job")
    storage_path: str = Field(description="root folder/URI for job outputs: <root>/<tenant>/<job id>")
    capacity_cpus: float | None = Field(default=None, description="largest job the backend can ever run")
    capacity_gpus: float | None = None
    credentials_dir: Path | None = Field(
        default=None, description="local mode: issue missing tenant/operator tokens at start and write them here (0600)"
    )
    sync_interval_seconds: float = Field(default=0.25, gt=0)
    lease_ttl_seconds: float = Field(
        default=5.0, gt=0, description="replicas: the reconciler lease lapses this long after its holder's last renewal"
    )
    lease_renew_seconds: float = Field(default=1.0, gt=0, description="replicas: how often the lease is renewed or tried")
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)

    @classmethod
    def from_file(cls, path: str | Path) -> "ControlPlaneSettings":
        path = Path(path)
        try:
            return cls.model_validate(json.loads(path.read_text()))
        except FileNotFoundError:
            raise SettingsError(f"{path}: no such settings file") from None
        except json.JSONDecodeError as exc:
            raise SettingsError(f"{path}: not valid JSON: {exc}") from None
        except ValidationError as exc:
            raise SettingsError(f"{path}: {format_validation_errors(exc.errors())}") from None

    def to_json(self) -> str:
        """The settings file's text (what ``from_file`` reads)."""
        return self.model_dump_json(indent=2, exclude_defaults=False)

    def write(self, path: str | Path) -> None:
        Path(path).write_text(self.to_json())
