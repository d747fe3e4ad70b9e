"""Kubernetes names both sides agree on: label and annotation keys, the GPU resource, taints.

The Pulumi program (``infra``) sets these on nodes, namespaces and queues; the control plane's
kuberay backend (``operators``) selects and labels with them. Nothing else spells them.
"""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict

# Labels the testbed sets.
TENANT_LABEL = "testbed.io/tenant"
REGION_LABEL = "testbed.io/region"
POOL_LABEL = "testbed.io/pool"
GPU_MODEL_LABEL = "testbed.io/gpu-model"
JOB_ID_LABEL = "testbed.io/job-id"
# Annotations the testbed sets.
STOP_ANNOTATION = "testbed.io/stop-requested-at"
CONFIG_DIGEST_ANNOTATION = "testbed.io/config-sha256"
SETTINGS_DIGEST_ANNOTATION = "testbed.io/settings-sha256"
# Kueue: the LocalQueue a workload is submitted to.
QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
# The NVIDIA device plugin's extended resource.
GPU_RESOURCE = "nvidia.com/gpu"
DEFAULT_GPU_TAINT = "nvidia.com/gpu=present:NoSchedule"

TAINT_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")
_TAINT_RE = re.compile(r"^([A-Za-z0-9./_-]+)=([A-Za-z0-9._-]*):(NoSchedule|PreferNoSchedule|NoExecute)$")
_EKS_EFFECTS = {"NoSchedule": "NO_SCHEDULE", "NoExecute": "NO_EXECUTE", "PreferNoSchedule": "PREFER_NO_SCHEDULE"}


class Taint(BaseModel):
    """A node taint, written ``key=value:Effect`` in stack files (kubectl's syntax)."""

    model_config = ConfigDict(frozen=True)

    key: str
    value: str
    effect: str

    @classmethod
    def parse(cls, text: str) -> "Taint":
        match = _TAINT_RE.match(text)
        if not match:
            raise ValueError(f"taint {text!r} is not 'key=value:{'|'.join(TAINT_EFFECTS)}'")
        return cls(key=match.group(1), value=match.group(2), effect=match.group(3))

    def __str__(self) -> str:
        return f"{self.key}={self.value}:{self.effect}"

    def toleration(self) -> dict[str, str]:
        """The Pod toleration that lets a pod onto nodes with this taint."""
        return {"key": self.key, "operator": "Equal", "value": self.value, "effect": self.effect}

    def eks(self) -> dict[str, str]:
        """The EKS API spelling (NoSchedule -> NO_SCHEDULE)."""
        return {"key": self.key, "value": self.value, "effect": _EKS_EFFECTS[self.effect]}
