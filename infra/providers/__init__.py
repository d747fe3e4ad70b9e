"""Cluster providers behind one small interface; one module per provider.

A provider module exposes ``build(name, stack) -> Cluster``. Adding GKE takes one new module
``infra/providers/gke.py`` (and the name in ``ClusterConfig.provider``).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Callable, Protocol

import pulumi
import pulumi_kubernetes as k8s

from testbed.kube import Taint
from infra.naming import pool_labels
from infra.storage import MlflowStorage
from testbed.config import NodePool, StackConfig


@dataclass(frozen=True)
class GpuPool:
    """A GPU node pool as the platform sees it: the labels to select it and the taints to tolerate."""

    config: NodePool
    managed: bool = True  # the provider creates the nodes (and so sets their labels and taints)

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def labels(self) -> dict[str, str]:
        return pool_labels(self.config, self.managed)

    @property
    def taints(self) -> list[Taint]:
        return self.config.parsed_taints


@dataclass
class Cluster:
    """What every provider hands to the platform and the tenant environments."""

    name: str
    kubeconfig: pulumi.Output[str]  # secret
    provider: k8s.Provider
    pools: list[GpuPool]
    # Builds MLflow's database and artifact store (managed on a cloud, in-cluster otherwise).
    mlflow_storage: Callable[[pulumi.Resource, pulumi.Input[str]], MlflowStorage]
    ready: list[pulumi.Resource] = field(default_factory=list)  # what platform objects wait for
    gpu_drivers_preinstalled: bool = False  # the node image ships NVIDIA drivers and container toolkit


class ClusterProvider(Protocol):
    def build(self, name: str, stack: StackConfig) -> Cluster: ...


def provider_for(name: str) -> ClusterProvider:
    """The provider module named in ``testbed:cluster.provider``."""
    return importlib.import_module(f"infra.providers.{name}")  # type: ignore[return-value]


def build_cluster(stack: StackConfig) -> Cluster:
    return provider_for(stack.cluster.provider).build(stack.region.id, stack)
