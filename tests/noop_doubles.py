"""Test aids around the product's no-op backend: pin a job's status, slow a submit down.

``TestNoopBackend.hold`` makes a job report a status whatever happens (tests pin a job starting or
running); a job whose env sets ``NOOP_SUBMIT_SECONDS`` takes that long to submit, like a real backend's
API call (tests widen race windows with it). ``python -m tests.noop_doubles --settings FILE`` runs the
control plane with this backend wherever the settings name ``noop`` (the replica tests' subprocesses).
"""

from __future__ import annotations

import sys
import time

from operators.control_plane.backends import factory
from operators.control_plane.backends.base import Backend, BackendJobInfo, Capacity, LaunchRequest
from operators.control_plane.backends.noop import NoopBackend
from testbed.config import StackConfig
from testbed.jobs import JobStatus
from testbed.settings import ControlPlaneSettings

SUBMIT_SECONDS_ENV = "NOOP_SUBMIT_SECONDS"


class TestNoopBackend(NoopBackend):
    """The no-op backend, plus ``hold`` and ``NOOP_SUBMIT_SECONDS``."""

    __test__ = False  # not a pytest class

    def __init__(self, database_url: str | None = None, capacity: Capacity | None = None) -> None:
        super().__init__(database_url, capacity)
        self._held: dict[str, JobStatus] = {}

    def submit(self, request: LaunchRequest) -> str:
        time.sleep(float(request.runtime_env.env_vars.get(SUBMIT_SECONDS_ENV, 0)))
        return super().submit(request)

    def hold(self, ref: str, status: JobStatus) -> None:
        """Report ``status`` for a job from now on (in-process jobs only)."""
        self.job(ref)
        self._held[ref] = status

    def info(self, ref: str) -> BackendJobInfo:
        held = self._held.get(ref)
        if held is not None:
            return BackendJobInfo(status=held, start_time=self.job(ref).submitted_at)
        return super().info(ref)


def noop_backend(settings: ControlPlaneSettings) -> TestNoopBackend:
    """What the product's factory builds for ``noop``, with the test aids."""
    capacity = Capacity(cpus=settings.capacity_cpus, gpus=settings.capacity_gpus, memory=settings.capacity_memory)
    return TestNoopBackend(settings.database_url, capacity)


def make_backend(settings: ControlPlaneSettings, stack: StackConfig) -> Backend:
    """The product's factory, with ``TestNoopBackend`` for ``noop``."""
    return noop_backend(settings) if settings.backend == "noop" else factory.make_backend(settings, stack)


def main() -> int:
    import operators.control_plane.plane as plane_module
    from operators.control_plane.__main__ import main as serve

    plane_module.make_backend = make_backend
    return serve()


if __name__ == "__main__":
    sys.exit(main())
