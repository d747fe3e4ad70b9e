"""The backend the control plane's settings name: ``ray`` (Ray Jobs), ``kuberay`` or ``noop``."""

from __future__ import annotations

from operators.control_plane.backends.base import Backend, Capacity
from testbed.config import StackConfig
from testbed.placement import Placement, PlacementError
from testbed.settings import ControlPlaneSettings


def make_backend(settings: ControlPlaneSettings, stack: StackConfig) -> Backend:
    """Build the configured backend (implementations are imported only when chosen)."""
    capacity = Capacity(cpus=settings.capacity_cpus, gpus=settings.capacity_gpus, memory=settings.capacity_memory)
    if settings.backend == "noop":
        from operators.control_plane.backends.noop import NoopBackend

        return NoopBackend(settings.database_url, capacity)  # on PostgreSQL, shared by the replicas
    if settings.backend == "kuberay":
        from operators.control_plane.backends.kuberay import RayJobOptions, resolve_targets
        from operators.control_plane.backends.kuberay_backend import KubeRayBackend

        if settings.placement_file is None:
            raise PlacementError("backend 'kuberay' needs placement_file (the placement.yaml Pulumi renders)")
        targets = resolve_targets(Placement.from_file(settings.placement_file), stack)
        options = RayJobOptions(image=settings.ray_image, ttl_seconds=settings.rayjob_ttl_seconds)
        return KubeRayBackend(targets, options, capacity=capacity)
    if not settings.ray_address:
        raise ValueError("backend 'ray' needs ray_address (the Ray dashboard URL)")
    from operators.control_plane.backends.ray_jobs import RayJobsBackend

    return RayJobsBackend(settings.ray_address, capacity, logins_dir=settings.job_logins_dir)
