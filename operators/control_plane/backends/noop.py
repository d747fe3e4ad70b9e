"""A backend that runs nothing: jobs succeed at once. For admission benchmarks and tests."""

from __future__ import annotations

import threading
import time

from operators.control_plane.backends.base import Backend, BackendJobInfo, Capacity, JobNotFound, LaunchRequest
from testbed.jobs import JobStatus


class NoopBackend(Backend):
    name = "noop"

    def __init__(self, capacity: Capacity | None = None) -> None:
        self._capacity = capacity or Capacity()
        self._jobs: dict[str, BackendJobInfo] = {}
        self._lock = threading.Lock()

    def submit(self, request: LaunchRequest) -> str:
        now = time.time()
        with self._lock:
            self._jobs.setdefault(
                request.job_id, BackendJobInfo(status=JobStatus.SUCCEEDED, start_time=now, end_time=now)
            )
        return request.job_id

    def info(self, ref: str) -> BackendJobInfo:
        with self._lock:
            if ref not in self._jobs:
                raise JobNotFound(f"no job {ref}")
            return self._jobs[ref]

    def logs(self, ref: str) -> str:
        self.info(ref)
        return ""

    def stop(self, ref: str) -> None:
        self.info(ref)

    def capacity(self) -> Capacity:
        return self._capacity
